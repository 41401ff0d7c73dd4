//! The VMX instructions of L1, emulated as SDM chapter 31's pseudocode
//! describes them, on one vCPU's emulated VMX state: in VMX operation or
//! not, the VMXON pointer, the current-VMCS pointer, and whether L2 runs.
//!
//! Every instruction ends in one [`VmxOutcome`]: retire it with VMsucceed,
//! VMfailInvalid or VMfailValid (SDM 31.2) in RFLAGS, raise an exception
//! (#UD, #GP(0), #SS(0), #PF), enter L2, or, for a VM entry that fails
//! after the VMX checks, exit to L1 as the CPU would.

use alloc::boxed::Box;

use vmx::exit::{ExitReason, ExitReasonField, VmInstructionError};
use vmx::vmcs::{Control32, Control64, Encoding, FieldType, ReadOnly32, ReadOnlyNatural};

use crate::guest_memory::GuestMemory;

use super::capabilities::{L1VmxCapabilities, REGION_SIZE, VMCS12_REVISION};
use super::entry_checks::{self, Controls12};
use super::operands::{self, Access, InstructionInfo};
use super::reflection::{self, L1Resume};
use super::state::{
    CpuState, BLOCKING_BY_MOV_SS, CR0_PE, CR4_VMXE, RFLAGS_AF, RFLAGS_CF, RFLAGS_OF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF,
};
use super::vmcs02::{self, L0Settings, Vmcs02};
use super::vmcs12::{self, LaunchState, Vmcs12};
use super::Exception;

/// The arithmetic flags VMsucceed and VMfail clear (SDM 31.2).
const STATUS_FLAGS: u64 = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;

/// A TLB invalidation L1 asked for; the shim performs it on L2's
/// contexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// INVEPT: drop the EPT02 built from this EPT12 pointer (`Some`), or
    /// every EPT02 of this vCPU (`None`), then INVEPT their roots.
    Ept { eptp12: Option<u64> },
    /// INVVPID: flush VPID02, for one linear address or whole.
    Vpid { address: Option<u64> },
}

/// A VMLAUNCH or VMRESUME that passed every check: the shim switches the
/// vCPU to vmcs02 built from this and runs L2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NestedEntry {
    pub vmcs02: Vmcs02,
}

/// What the monitor does about one VMX instruction of L1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmxOutcome {
    /// The instruction completed: set RFLAGS, write `gpr` if given (x86
    /// register number, value), advance RIP past the instruction, then
    /// perform `invalidation`.
    Retire { rflags: u64, gpr: Option<(u8, u64)>, invalidation: Option<Invalidation> },
    /// Raise this exception in L1; RIP stays on the instruction.
    Fault(Exception),
    /// Run L2.
    EnterL2(Box<NestedEntry>),
    /// The VM entry failed while loading guest state or MSRs: L1 continues
    /// at its host RIP with this state, vmcs12 holds the failure.
    ExitToL1(Box<L1Resume>),
    /// VMX abort (SDM 28.7): the indicator is in vmcs12; L1 shuts down.
    Abort { indicator: u32 },
    /// The instruction is not a nested-VMX matter (VMCALL outside VMX
    /// operation): the monitor handles it as before.
    NotNested,
}

/// Counters of odd L1 behaviour, for the monitor's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NestedMetrics {
    pub vmfail_invalid: u64,
    pub vmfail_valid: u64,
    pub faults: u64,
    pub entries: u64,
    pub entry_failures: u64,
    pub reflected_exits: u64,
    pub aborts: u64,
}

/// L2's context while it runs: which vmcs12, a snapshot of it, and what
/// L1 had when it entered.
#[derive(Clone, Debug)]
pub(crate) struct L2Context {
    pub region: u64,
    pub vmcs12: Vmcs12,
    pub l1: CpuState,
}

/// One vCPU's emulated VMX.
#[derive(Clone, Debug)]
pub struct NestedVmx {
    pub(crate) caps: L1VmxCapabilities,
    vmxon_region: Option<u64>,
    current_vmcs: Option<u64>,
    pub(crate) l2: Option<Box<L2Context>>,
    /// vmcs12's VPID at the last entry with VPID enabled, to flush VPID02
    /// when L1 switches VPIDs.
    last_vpid12: Option<u16>,
    pub metrics: NestedMetrics,
}

/// The instructions [`NestedVmx::execute`] emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxInstruction {
    Vmxon,
    Vmxoff,
    Vmclear,
    Vmptrld,
    Vmptrst,
    Vmread,
    Vmwrite,
    Vmlaunch,
    Vmresume,
    Invept,
    Invvpid,
    Vmcall,
}

impl VmxInstruction {
    /// The instruction an exit reason names, if it is one of these.
    pub fn from_exit_reason(reason: ExitReason) -> Option<Self> {
        Some(match reason {
            ExitReason::Vmxon => Self::Vmxon,
            ExitReason::Vmxoff => Self::Vmxoff,
            ExitReason::Vmclear => Self::Vmclear,
            ExitReason::Vmptrld => Self::Vmptrld,
            ExitReason::Vmptrst => Self::Vmptrst,
            ExitReason::Vmread => Self::Vmread,
            ExitReason::Vmwrite => Self::Vmwrite,
            ExitReason::Vmlaunch => Self::Vmlaunch,
            ExitReason::Vmresume => Self::Vmresume,
            ExitReason::Invept => Self::Invept,
            ExitReason::Invvpid => Self::Invvpid,
            ExitReason::Vmcall => Self::Vmcall,
            _ => return None,
        })
    }
}

/// What the exit of a VMX instruction of L1 reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InstructionExit {
    /// The exit qualification: the memory operand's displacement.
    pub qualification: u64,
    pub instruction_info: u32,
}

/// What an entry needs besides L1's state.
pub struct EntryEnvironment<'a> {
    pub l0: &'a L0Settings,
    /// The monitor's MSR policy: would WRMSR of this value to this MSR
    /// succeed for L2? Entries that fail it fail the VM entry (reason 34).
    pub wrmsr_ok: &'a dyn Fn(u32, u64) -> bool,
}

impl NestedVmx {
    pub fn new(caps: L1VmxCapabilities) -> Self {
        Self { caps, vmxon_region: None, current_vmcs: None, l2: None, last_vpid12: None, metrics: Default::default() }
    }

    pub fn capabilities(&self) -> &L1VmxCapabilities {
        &self.caps
    }

    /// Whether L1 executed VMXON (and no VMXOFF since).
    pub fn in_vmx_operation(&self) -> bool {
        self.vmxon_region.is_some()
    }

    /// Whether the vCPU runs L2 (between a VM entry and the exit to L1).
    pub fn in_l2(&self) -> bool {
        self.l2.is_some()
    }

    /// The controls of the vmcs12 that L2 runs on, while it runs.
    pub fn l2_controls(&self) -> Option<Controls12> {
        self.l2.as_ref().map(|context| Controls12::of(&context.vmcs12))
    }

    /// The current-VMCS pointer, `None` when it is FFFFFFFF_FFFFFFFFH.
    pub fn current_vmcs(&self) -> Option<u64> {
        self.current_vmcs
    }

    /// Whether L1 may load `cr4`: in VMX operation CR4.VMXE must stay 1
    /// and CR0/CR4 must respect the fixed bits (SDM 24.8); a MOV to CR that
    /// breaks them raises #GP(0).
    pub fn check_cr_write(&self, cr: u8, value: u64) -> Result<(), Exception> {
        if !self.in_vmx_operation() {
            return Ok(());
        }
        let ok = match cr {
            0 => self.caps.cr0_fixed.is_valid(value),
            4 => self.caps.cr4_fixed.is_valid(value) && value & CR4_VMXE != 0,
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(Exception::GP0)
        }
    }

    /// Emulates one VMX instruction that L1 executed. `l1` is L1's state at
    /// the exit, with CR0/CR4 as L1 sees them.
    pub fn execute(
        &mut self,
        instruction: VmxInstruction,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
        environment: &EntryEnvironment,
    ) -> VmxOutcome {
        let outcome = match instruction {
            VmxInstruction::Vmxon => self.vmxon(exit, l1, memory),
            VmxInstruction::Vmcall => self.vmcall(l1, memory),
            other => match self.root_checks(l1) {
                Err(exception) => Err(exception),
                Ok(()) => match other {
                    VmxInstruction::Vmxoff => Ok(self.vmxoff(l1)),
                    VmxInstruction::Vmclear => self.vmclear(exit, l1, memory),
                    VmxInstruction::Vmptrld => self.vmptrld(exit, l1, memory),
                    VmxInstruction::Vmptrst => self.vmptrst(exit, l1, memory),
                    VmxInstruction::Vmread => self.vmread(exit, l1, memory),
                    VmxInstruction::Vmwrite => self.vmwrite(exit, l1, memory),
                    VmxInstruction::Vmlaunch => Ok(self.vm_entry(true, l1, memory, environment)),
                    VmxInstruction::Vmresume => Ok(self.vm_entry(false, l1, memory, environment)),
                    VmxInstruction::Invept => self.invept(exit, l1, memory),
                    VmxInstruction::Invvpid => self.invvpid(exit, l1, memory),
                    VmxInstruction::Vmxon | VmxInstruction::Vmcall => unreachable!("handled above"),
                },
            },
        };
        match outcome {
            Ok(outcome) => outcome,
            Err(exception) => {
                self.metrics.faults += 1;
                VmxOutcome::Fault(exception)
            }
        }
    }

    /// The checks every VMX instruction but VMXON and VMCALL starts with
    /// (SDM 31.3): #UD outside VMX operation, in real or virtual-8086 mode
    /// or in compatibility mode; #GP(0) at CPL > 0. (In VMX non-root
    /// operation the instruction exits: that is L2's case, reflected
    /// before it reaches here.)
    fn root_checks(&self, l1: &CpuState) -> Result<(), Exception> {
        if !self.in_vmx_operation() || l1.cr0 & CR0_PE == 0 || l1.virtual_8086() || l1.in_compatibility_mode() {
            return Err(Exception::UD);
        }
        if l1.cpl() > 0 {
            return Err(Exception::GP0);
        }
        Ok(())
    }

    fn succeed(&self, l1: &CpuState) -> VmxOutcome {
        VmxOutcome::Retire { rflags: l1.rflags & !STATUS_FLAGS, gpr: None, invalidation: None }
    }

    /// VMfail(error): VMfailValid with the error in the current VMCS when
    /// there is one, VMfailInvalid otherwise (SDM 31.2).
    fn fail(&mut self, l1: &CpuState, memory: &mut impl GuestMemory, error: VmInstructionError) -> VmxOutcome {
        match self.current_vmcs {
            Some(region) => self.fail_valid(l1, memory, region, error),
            None => self.fail_invalid(l1),
        }
    }

    fn fail_valid(
        &mut self,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
        region: u64,
        error: VmInstructionError,
    ) -> VmxOutcome {
        self.metrics.vmfail_valid += 1;
        let field = Encoding(ReadOnly32::VmInstructionError as u32);
        // The region was in RAM at VMPTRLD and RAM does not shrink.
        let _ = vmcs12::write_field(memory, region, field, u64::from(error.number()));
        VmxOutcome::Retire { rflags: (l1.rflags & !STATUS_FLAGS) | RFLAGS_ZF, gpr: None, invalidation: None }
    }

    fn fail_invalid(&mut self, l1: &CpuState) -> VmxOutcome {
        self.metrics.vmfail_invalid += 1;
        VmxOutcome::Retire { rflags: (l1.rflags & !STATUS_FLAGS) | RFLAGS_CF, gpr: None, invalidation: None }
    }

    /// Reads the 64-bit memory operand of VMXON, VMCLEAR and VMPTRLD.
    fn read_pointer_operand(
        &self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<u64, Exception> {
        let info = InstructionInfo(exit.instruction_info);
        if info.is_register() {
            return Err(Exception::UD);
        }
        let operand = operands::linear_operand(l1, info, exit.qualification, 8, Access::Read)?;
        let mut bytes = [0; 8];
        operands::read_linear(l1, memory, self.caps.physical_address_width, operand.address, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Whether a VMXON/VMCS pointer is 4 KiB aligned and within L1's
    /// physical-address width.
    fn pointer_valid(&self, address: u64) -> bool {
        address & 0xfff == 0 && !self.caps.beyond_physical_width(address)
    }

    /// The revision identifier of the region at `address`, or all ones
    /// when the region is not entirely in L1's RAM (an empty bus reads as
    /// ones, which no revision check accepts).
    fn region_revision(memory: &impl GuestMemory, address: u64) -> u32 {
        if !memory.contains(address, REGION_SIZE) {
            return u32::MAX;
        }
        memory.read_u32(address).unwrap_or(u32::MAX)
    }

    /// VMXON (SDM 31.3, VMXON).
    fn vmxon(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        let info = InstructionInfo(exit.instruction_info);
        if info.is_register()
            || l1.cr0 & CR0_PE == 0
            || l1.cr4 & CR4_VMXE == 0
            || l1.virtual_8086()
            || l1.in_compatibility_mode()
        {
            return Err(Exception::UD);
        }
        if self.in_vmx_operation() {
            if l1.cpl() > 0 {
                return Err(Exception::GP0);
            }
            return Ok(self.fail(l1, memory, VmInstructionError::VmxonInVmxRoot));
        }
        // IA32_FEATURE_CONTROL is locked with VMXON outside SMX enabled for
        // every guest shown VMX (see the MSR policy), so only CPL and the
        // fixed bits can refuse VMXON here.
        if l1.cpl() > 0 || !self.caps.cr0_fixed.is_valid(l1.cr0) || !self.caps.cr4_fixed.is_valid(l1.cr4) {
            return Err(Exception::GP0);
        }
        let address = self.read_pointer_operand(exit, l1, memory)?;
        if !self.pointer_valid(address) {
            return Ok(self.fail_invalid(l1));
        }
        let revision = Self::region_revision(memory, address);
        if revision != VMCS12_REVISION {
            // Also refuses bit 31 set: no shadow VMCS as VMXON region.
            return Ok(self.fail_invalid(l1));
        }
        self.vmxon_region = Some(address);
        self.current_vmcs = None;
        Ok(self.succeed(l1))
    }

    /// VMXOFF: leaves VMX operation (no dual-monitor treatment, so it
    /// cannot fail with error 23).
    fn vmxoff(&mut self, l1: &CpuState) -> VmxOutcome {
        self.vmxon_region = None;
        self.current_vmcs = None;
        self.last_vpid12 = None;
        self.succeed(l1)
    }

    /// VMCLEAR (SDM 31.3).
    fn vmclear(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        let address = self.read_pointer_operand(exit, l1, memory)?;
        if !self.pointer_valid(address) {
            return Ok(self.fail(l1, memory, VmInstructionError::VmclearInvalidAddress));
        }
        if Some(address) == self.vmxon_region {
            return Ok(self.fail(l1, memory, VmInstructionError::VmclearVmxonPointer));
        }
        // "Ensure that data for the VMCS is in memory" is a no-op: vmcs12
        // lives in memory. Launch state becomes clear; outside RAM the
        // write is dropped, as the CPU's would be.
        if memory.contains(address, REGION_SIZE) {
            let _ = vmcs12::write_launch_state(memory, address, LaunchState::Clear);
        }
        if Some(address) == self.current_vmcs {
            self.current_vmcs = None;
        }
        Ok(self.succeed(l1))
    }

    /// VMPTRLD (SDM 31.3).
    fn vmptrld(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        let address = self.read_pointer_operand(exit, l1, memory)?;
        if !self.pointer_valid(address) {
            return Ok(self.fail(l1, memory, VmInstructionError::VmptrldInvalidAddress));
        }
        if Some(address) == self.vmxon_region {
            return Ok(self.fail(l1, memory, VmInstructionError::VmptrldVmxonPointer));
        }
        // Bit 31 (shadow VMCS) set fails too: VMCS shadowing is not offered.
        if Self::region_revision(memory, address) != VMCS12_REVISION {
            return Ok(self.fail(l1, memory, VmInstructionError::VmptrldWrongRevision));
        }
        self.current_vmcs = Some(address);
        Ok(self.succeed(l1))
    }

    /// VMPTRST: stores the current-VMCS pointer (all ones if none).
    fn vmptrst(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        let info = InstructionInfo(exit.instruction_info);
        if info.is_register() {
            return Err(Exception::UD);
        }
        let operand = operands::linear_operand(l1, info, exit.qualification, 8, Access::Write)?;
        let pointer = self.current_vmcs.unwrap_or(u64::MAX);
        operands::write_linear(l1, memory, self.caps.physical_address_width, operand.address, &pointer.to_le_bytes())?;
        Ok(self.succeed(l1))
    }

    /// The operand size of VMREAD/VMWRITE and of the INVEPT/INVVPID type
    /// register: 64 bits in 64-bit mode, 32 otherwise.
    fn operand_bytes(l1: &CpuState) -> u8 {
        if l1.in_64bit_mode() {
            8
        } else {
            4
        }
    }

    fn register_operand(l1: &CpuState, number: u8) -> u64 {
        let value = l1.gpr(number);
        if l1.in_64bit_mode() {
            value
        } else {
            value & 0xffff_ffff
        }
    }

    /// The field a VMREAD/VMWRITE names, if vmcs12 supports it. In 64-bit
    /// mode the encoding comes from a 64-bit register: bits 63:32 set name
    /// no field.
    fn field_operand(l1: &CpuState, info: InstructionInfo) -> Option<Encoding> {
        let raw = Self::register_operand(l1, info.reg2());
        let encoding = Encoding(u32::try_from(raw).ok()?);
        vmcs12::is_supported(encoding).then_some(encoding)
    }

    /// VMREAD (SDM 31.3).
    fn vmread(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        let Some(region) = self.current_vmcs else {
            return Ok(self.fail_invalid(l1));
        };
        let info = InstructionInfo(exit.instruction_info);
        let Some(encoding) = Self::field_operand(l1, info) else {
            return Ok(self.fail_valid(l1, memory, region, VmInstructionError::UnsupportedVmcsComponent));
        };
        let size = Self::operand_bytes(l1);
        let value = vmcs12::read_field(memory, region, encoding).unwrap_or(0);
        // A field wider than the operand is truncated, a narrower one
        // zero-extended.
        let value = if size == 4 { value & 0xffff_ffff } else { value };
        let rflags = l1.rflags & !STATUS_FLAGS;
        if info.is_register() {
            return Ok(VmxOutcome::Retire { rflags, gpr: Some((info.reg1(), value)), invalidation: None });
        }
        let operand = operands::linear_operand(l1, info, exit.qualification, size, Access::Write)?;
        let bytes = value.to_le_bytes();
        operands::write_linear(l1, memory, self.caps.physical_address_width, operand.address, &bytes[..size as usize])?;
        Ok(VmxOutcome::Retire { rflags, gpr: None, invalidation: None })
    }

    /// VMWRITE (SDM 31.3).
    fn vmwrite(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        let info = InstructionInfo(exit.instruction_info);
        let size = Self::operand_bytes(l1);
        // The source operand is read before the checks: a bad memory
        // operand faults even when the VMWRITE would fail.
        let value = if info.is_register() {
            Self::register_operand(l1, info.reg1())
        } else {
            let operand = operands::linear_operand(l1, info, exit.qualification, size, Access::Read)?;
            let mut bytes = [0; 8];
            operands::read_linear(
                l1,
                memory,
                self.caps.physical_address_width,
                operand.address,
                &mut bytes[..size as usize],
            )?;
            u64::from_le_bytes(bytes)
        };
        let Some(region) = self.current_vmcs else {
            return Ok(self.fail_invalid(l1));
        };
        let Some(encoding) = Self::field_operand(l1, info) else {
            return Ok(self.fail_valid(l1, memory, region, VmInstructionError::UnsupportedVmcsComponent));
        };
        if encoding.is_read_only() && !self.caps.misc.vmwrite_any_field() {
            return Ok(self.fail_valid(l1, memory, region, VmInstructionError::VmwriteReadOnlyComponent));
        }
        let _ = vmcs12::write_field(memory, region, encoding, value);
        Ok(self.succeed(l1))
    }

    /// INVEPT (SDM 31.3): type 1 single-context, 2 all-context.
    fn invept(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        if !self.caps.ept_vpid.invept() {
            return Err(Exception::UD);
        }
        let (kind, descriptor) = self.descriptor_operands(exit, l1, memory)?;
        let eptp = descriptor[0];
        let invalidation = match kind {
            1 if self.caps.ept_vpid.invept_single_context() => {
                if !entry_checks::eptp_valid(&self.caps, eptp) {
                    return Ok(self.fail(l1, memory, VmInstructionError::InvalidInveptInvvpidOperand));
                }
                Invalidation::Ept { eptp12: Some(eptp) }
            }
            2 if self.caps.ept_vpid.invept_all_context() => Invalidation::Ept { eptp12: None },
            _ => return Ok(self.fail(l1, memory, VmInstructionError::InvalidInveptInvvpidOperand)),
        };
        Ok(VmxOutcome::Retire { rflags: l1.rflags & !STATUS_FLAGS, gpr: None, invalidation: Some(invalidation) })
    }

    /// INVVPID (SDM 31.3): types 0 individual address, 1 single context,
    /// 2 all contexts, 3 single context retaining globals.
    fn invvpid(
        &mut self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<VmxOutcome, Exception> {
        if !self.caps.ept_vpid.invvpid() {
            return Err(Exception::UD);
        }
        let (kind, descriptor) = self.descriptor_operands(exit, l1, memory)?;
        let caps = self.caps.ept_vpid;
        let supported = match kind {
            0 => caps.invvpid_individual_address(),
            1 => caps.invvpid_single_context(),
            2 => caps.invvpid_all_context(),
            3 => caps.invvpid_single_context_retaining_globals(),
            _ => false,
        };
        let vpid = descriptor[0] & 0xffff;
        let address = descriptor[1];
        let valid = supported
            && descriptor[0] >> 16 == 0
            && match kind {
                0 => vpid != 0 && super::state::is_canonical(address),
                1 | 3 => vpid != 0,
                _ => true,
            };
        if !valid {
            return Ok(self.fail(l1, memory, VmInstructionError::InvalidInveptInvvpidOperand));
        }
        let invalidation = Invalidation::Vpid { address: (kind == 0).then_some(address) };
        Ok(VmxOutcome::Retire { rflags: l1.rflags & !STATUS_FLAGS, gpr: None, invalidation: Some(invalidation) })
    }

    /// The type register (reg2) and the 128-bit memory descriptor of
    /// INVEPT and INVVPID, read before any check as the pseudocode does.
    fn descriptor_operands(
        &self,
        exit: &InstructionExit,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
    ) -> Result<(u64, [u64; 2]), Exception> {
        let info = InstructionInfo(exit.instruction_info);
        let kind = Self::register_operand(l1, info.reg2());
        let operand = operands::linear_operand(l1, info, exit.qualification, 16, Access::Read)?;
        let mut bytes = [0; 16];
        operands::read_linear(l1, memory, self.caps.physical_address_width, operand.address, &mut bytes)?;
        let low = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        let high = u64::from_le_bytes(bytes[8..].try_into().unwrap_or([0; 8]));
        Ok((kind, [low, high]))
    }

    /// VMCALL in L1. Outside VMX operation it is the monitor's own
    /// hypercall (or #UD) as before; in VMX root operation, with no
    /// dual-monitor treatment, it fails with error 1 (SDM 31.3, VMCALL).
    fn vmcall(&mut self, l1: &CpuState, memory: &mut impl GuestMemory) -> Result<VmxOutcome, Exception> {
        if !self.in_vmx_operation() {
            return Ok(VmxOutcome::NotNested);
        }
        if l1.virtual_8086() || l1.in_compatibility_mode() {
            return Err(Exception::UD);
        }
        if l1.cpl() > 0 {
            return Err(Exception::GP0);
        }
        Ok(self.fail(l1, memory, VmInstructionError::VmcallInVmxRoot))
    }

    /// VMLAUNCH and VMRESUME (SDM 31.3, 27.1-27.4).
    fn vm_entry(
        &mut self,
        launch: bool,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
        environment: &EntryEnvironment,
    ) -> VmxOutcome {
        let Some(region) = self.current_vmcs else {
            return self.fail_invalid(l1);
        };
        if l1.interruptibility & BLOCKING_BY_MOV_SS != 0 {
            return self.fail_valid(l1, memory, region, VmInstructionError::EntryEventsBlockedByMovSs);
        }
        let launch_state = vmcs12::read_launch_state(memory, region).unwrap_or(LaunchState::Clear);
        match (launch, launch_state) {
            (true, LaunchState::Launched) => {
                return self.fail_valid(l1, memory, region, VmInstructionError::VmlaunchNonClearVmcs)
            }
            (false, LaunchState::Clear) => {
                return self.fail_valid(l1, memory, region, VmInstructionError::VmresumeNonLaunchedVmcs)
            }
            _ => {}
        }
        // One copy of vmcs12: what is checked is what is used.
        let Ok(snapshot) = Vmcs12::load(memory, region) else {
            return self.fail_valid(l1, memory, region, VmInstructionError::EntryInvalidControlFields);
        };
        if entry_checks::check_controls(&self.caps, &snapshot).is_err() {
            return self.fail_valid(l1, memory, region, VmInstructionError::EntryInvalidControlFields);
        }
        if entry_checks::check_host_state(&self.caps, &snapshot, l1.long_mode_active()).is_err() {
            return self.fail_valid(l1, memory, region, VmInstructionError::EntryInvalidHostStateFields);
        }
        self.metrics.entries += 1;
        let l2 = match entry_checks::check_guest_state(&self.caps, &snapshot, memory) {
            Ok(l2) => l2,
            Err(failure) => {
                return self.entry_failure(
                    region,
                    snapshot,
                    l1,
                    memory,
                    ExitReason::EntryFailureInvalidGuestState,
                    failure.qualification,
                )
            }
        };
        let msr_loads = match entry_checks::read_msr_load_list(
            memory,
            snapshot.get(Control64::EntryMsrLoadAddress),
            snapshot.get(Control32::EntryMsrLoadCount) as u32,
            environment.wrmsr_ok,
        ) {
            Ok(loads) => loads,
            Err(index) => {
                return self.entry_failure(
                    region,
                    snapshot,
                    l1,
                    memory,
                    ExitReason::EntryFailureMsrLoading,
                    u64::from(index),
                )
            }
        };

        if launch {
            let _ = vmcs12::write_launch_state(memory, region, LaunchState::Launched);
        }
        let mut vmcs02 = vmcs02::build(&snapshot, &l2, l1, environment.l0, msr_loads);
        let controls = Controls12::of(&snapshot);
        let vpid12 = controls
            .secondary
            .contains(vmx::controls::SecondaryControls::VPID)
            .then(|| snapshot.get(vmx::vmcs::Control16::VirtualProcessorId) as u16);
        // Without VPID in vmcs12, L2 shares L1's VPID 0 and every entry
        // and exit flushes it (SDM 29.4.3.3); with it, a change of VPID12
        // is a new TLB context for the one VPID02.
        vmcs02.flush_vpid02 = vpid12.is_none() || vpid12 != self.last_vpid12;
        self.last_vpid12 = vpid12;
        self.l2 = Some(Box::new(L2Context { region, vmcs12: snapshot, l1: *l1 }));
        VmxOutcome::EnterL2(Box::new(NestedEntry { vmcs02 }))
    }

    /// A VM entry that failed after the VMX checks (SDM 27.8): vmcs12 gets
    /// the exit reason with bit 31 and the qualification, and L1 continues
    /// with vmcs12's host state as after a VM exit.
    fn entry_failure(
        &mut self,
        region: u64,
        mut snapshot: Vmcs12,
        l1: &CpuState,
        memory: &mut impl GuestMemory,
        reason: ExitReason,
        qualification: u64,
    ) -> VmxOutcome {
        self.metrics.entry_failures += 1;
        snapshot.set(ReadOnly32::ExitReason, u64::from(ExitReasonField::entry_failure(reason).0));
        snapshot.set(ReadOnlyNatural::ExitQualification, qualification);
        snapshot.set(ReadOnly32::ExitInterruptionInfo, 0);
        let _ = snapshot.store(memory, region, &[FieldType::ReadOnlyData]);
        match reflection::load_host_state(&snapshot, l1, memory, region) {
            Ok(resume) => VmxOutcome::ExitToL1(Box::new(resume)),
            Err(indicator) => {
                self.metrics.aborts += 1;
                VmxOutcome::Abort { indicator }
            }
        }
    }

    /// Ends L2: the vCPU is back in L1. Used by the reflection path.
    pub(crate) fn leave_l2(&mut self) -> Option<Box<L2Context>> {
        self.l2.take()
    }
}

#[cfg(test)]
mod tests;
