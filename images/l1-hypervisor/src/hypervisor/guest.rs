//! L2's world and the VMCS that runs it.
//!
//! L2 runs in 64-bit mode on page tables, a GDT, an IDT, a TSS and a stack
//! that L1 builds in L2's memory (layout.rs); its code is the payload in
//! this image. EPT maps that memory 1:1 and the payload's pages read and
//! execute only; everything else of the machine is absent for L2. The VMCS
//! is filled as SDM 26.2-26.3 require for such a guest, with the controls
//! adjusted to what the capability MSRs allow.

use l1_hypervisor::ept::{Ept, EptError, EPTP_UNCACHEABLE, EPTP_WRITE_BACK, EXECUTE, READ, WRITE};
use l1_hypervisor::layout::*;
use l1_hypervisor::protocol::{self, command};
use vmx::capabilities::VmxCapabilities;
use vmx::controls::{AllowedControls, EntryControls, ExitControls, PrimaryControls, SecondaryControls};
use vmx::exit::ExitReason;
use vmx::msr::{IA32_EFER, IA32_FS_BASE, IA32_GS_BASE, IA32_SYSENTER_CS, IA32_SYSENTER_EIP, IA32_SYSENTER_ESP};
use vmx::vmcs::{
    Control16, Control32, Control64, ControlNatural, Guest16, Guest32, Guest64, GuestNatural, Host16, Host32, Host64,
    HostNatural,
};
use vmx_instructions::{enter_guest, exit_landing_address, GuestRegisters, VmxInstructionError};

use super::report::{Failed, Report};
use super::vmcs::{self, Exit, InstructionError};
use crate::arch::memory::{self, WorkRegion};
use crate::arch::{self, l2, read_cr3, read_msr};
use multiboot_kernel::arch::cpu::{read_cr0, read_cr4};
use multiboot_kernel::arch::descriptors;

/// L2's virtual-processor identifier (0 is the host's).
pub const VPID: u16 = 1;
/// The exceptions that exit instead of going through L2's IDT: #BP and #UD.
pub const EXCEPTION_BITMAP: u32 = 1 << 3 | 1 << 6;

const PAGE_PRESENT_WRITABLE: u64 = 0x3;
const PAGE_LARGE: u64 = 0x80;
/// L2's GDT: null, 64-bit code (0x08), data (0x10), and the TSS (0x18).
const L2_GDT_ENTRIES: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];
const L2_CODE: u16 = 0x08;
const L2_DATA: u16 = 0x10;
const L2_TR: u16 = 0x18;
const TSS_LIMIT: u32 = 0x67;
/// Segment access rights as the VMCS holds them (SDM 25.4.1): present,
/// accessed, granular; code is 64-bit, TR a busy 64-bit TSS, LDTR unusable.
const CODE_ACCESS: u32 = 0xa09b;
const DATA_ACCESS: u32 = 0xc093;
const TR_ACCESS: u32 = 0x008b;
const UNUSABLE: u32 = 1 << 16;
const RFLAGS_RESERVED_ONE: u64 = 1 << 1;
/// Interruptibility-state bits 0 and 1.
const BLOCKING_BY_STI_OR_MOV_SS: u32 = 0b11;
const DR7_RESERVED_ONE: u64 = 0x400;

/// The control fields, fixed once at start; checks change them for a
/// while and `Vm::start` puts them back.
#[derive(Debug, Clone, Copy)]
pub struct Controls {
    pub pin: u32,
    pub primary: u32,
    pub secondary: u32,
    pub exit: u32,
    pub entry: u32,
}

/// The guest, its VMCS and its EPT.
pub struct Vm {
    pub capabilities: VmxCapabilities,
    pub controls: Controls,
    pub registers: GuestRegisters,
    pub ept: Ept<WorkRegion>,
    pub eptp: u64,
    launched: bool,
}

/// What a VM entry led to.
pub enum Entry {
    /// The guest ran (or the entry failed its guest-state checks, which
    /// also ends in an exit: see `Exit::reason`).
    Exited(Exit),
    /// VMLAUNCH/VMRESUME failed; VMfailValid carries the error number.
    Failed(VmxInstructionError, Option<InstructionError>),
}

fn adjust(report: &mut Report, group: &str, allowed: AllowedControls, wanted: u32) -> Result<u32, Failed> {
    match allowed.adjust(wanted) {
        Ok(value) => Ok(value),
        Err(missing) => fail!(report, "the {group} controls cannot set {missing:#x}"),
    }
}

impl Vm {
    /// Builds L2's memory and EPT and fills the current VMCS.
    pub fn new(report: &mut Report, capabilities: VmxCapabilities) -> Result<Self, Failed> {
        let c = &capabilities;
        let controls = Controls {
            pin: adjust(report, "pin-based", c.pin_based, 0)?,
            primary: adjust(
                report,
                "primary",
                c.primary,
                (PrimaryControls::HLT_EXITING
                    | PrimaryControls::UNCONDITIONAL_IO_EXITING
                    | PrimaryControls::SECONDARY_CONTROLS)
                    .bits(),
            )?,
            secondary: adjust(
                report,
                "secondary",
                c.secondary,
                (SecondaryControls::EPT | SecondaryControls::VPID).bits(),
            )?,
            exit: adjust(
                report,
                "exit",
                c.exit,
                (ExitControls::HOST_ADDRESS_SPACE_SIZE | ExitControls::LOAD_EFER).bits(),
            )?,
            entry: adjust(
                report,
                "entry",
                c.entry,
                (EntryControls::IA32E_MODE_GUEST | EntryControls::LOAD_EFER).bits(),
            )?,
        };
        build_l2_memory();
        let ept = match build_ept() {
            Ok(ept) => ept,
            Err(error) => fail!(report, "building the EPT: {error}"),
        };
        let memory_type = if c.ept_vpid.write_back() { EPTP_WRITE_BACK } else { EPTP_UNCACHEABLE };
        let eptp = ept.pointer(memory_type);
        let vm = Self { capabilities, controls, registers: GuestRegisters::default(), ept, eptp, launched: false };
        vm.fill_vmcs();
        Ok(vm)
    }

    fn fill_vmcs(&self) {
        let c = &self.controls;
        vmcs::write(Control32::PinBasedControls, c.pin);
        vmcs::write(Control32::PrimaryProcessorBasedControls, c.primary);
        vmcs::write(Control32::SecondaryProcessorBasedControls, c.secondary);
        vmcs::write(Control32::ExitControls, c.exit);
        vmcs::write(Control32::EntryControls, c.entry);
        vmcs::write(Control32::ExceptionBitmap, EXCEPTION_BITMAP);
        vmcs::write(Control32::PageFaultErrorCodeMask, 0);
        vmcs::write(Control32::PageFaultErrorCodeMatch, 0);
        vmcs::write(Control32::Cr3TargetCount, 0);
        vmcs::write(Control32::ExitMsrStoreCount, 0);
        vmcs::write(Control32::ExitMsrLoadCount, 0);
        vmcs::write(Control32::EntryMsrLoadCount, 0);
        vmcs::write(Control32::EntryInterruptionInfo, 0);
        vmcs::write(Control16::VirtualProcessorId, VPID);
        vmcs::write(Control64::EptPointer, self.eptp);

        // Host: L1 as it runs now; exits land in vmx_run.s, which also
        // writes the host RSP before each entry.
        vmcs::write(HostNatural::Cr0, read_cr0());
        vmcs::write(HostNatural::Cr3, read_cr3());
        vmcs::write(HostNatural::Cr4, read_cr4());
        vmcs::write(Host16::CsSelector, descriptors::CODE64_SELECTOR);
        for field in [Host16::SsSelector, Host16::DsSelector, Host16::EsSelector] {
            vmcs::write(field, descriptors::DATA_SELECTOR);
        }
        vmcs::write(Host16::FsSelector, 0);
        vmcs::write(Host16::GsSelector, 0);
        vmcs::write(Host16::TrSelector, descriptors::TSS_SELECTOR);
        vmcs::write(HostNatural::FsBase, read_msr(IA32_FS_BASE));
        vmcs::write(HostNatural::GsBase, read_msr(IA32_GS_BASE));
        vmcs::write(HostNatural::TrBase, descriptors::tss_base());
        vmcs::write(HostNatural::GdtrBase, descriptors::gdt_base());
        vmcs::write(HostNatural::IdtrBase, descriptors::idt_base());
        vmcs::write(Host32::Ia32SysenterCs, read_msr(IA32_SYSENTER_CS) as u32);
        vmcs::write(HostNatural::Ia32SysenterEsp, read_msr(IA32_SYSENTER_ESP));
        vmcs::write(HostNatural::Ia32SysenterEip, read_msr(IA32_SYSENTER_EIP));
        vmcs::write(Host64::Ia32Efer, read_msr(IA32_EFER));
        vmcs::write(HostNatural::Rip, exit_landing_address());

        // Guest: 64-bit mode, paging on L2's own tables.
        let caps = &self.capabilities;
        let cr0 =
            caps.adjust_cr0(arch::CR0_PE | arch::CR0_MP | arch::CR0_ET | arch::CR0_NE | arch::CR0_WP | arch::CR0_PG);
        let cr4 = caps.adjust_cr4(arch::CR4_PAE | arch::CR4_OSFXSR | arch::CR4_OSXMMEXCPT);
        vmcs::write(GuestNatural::Cr0, cr0);
        vmcs::write(GuestNatural::Cr3, L2_PML4);
        vmcs::write(GuestNatural::Cr4, cr4);
        // L2 owns CR0; CR4.VMXE, which VMX operation forces on, is L1's and
        // reads as 0 in L2.
        vmcs::write(ControlNatural::Cr0GuestHostMask, 0);
        vmcs::write(ControlNatural::Cr0ReadShadow, cr0);
        vmcs::write(ControlNatural::Cr4GuestHostMask, arch::CR4_VMXE);
        vmcs::write(ControlNatural::Cr4ReadShadow, cr4 & !arch::CR4_VMXE);
        vmcs::write(Guest64::Ia32Efer, read_msr(IA32_EFER) | arch::EFER_LME | arch::EFER_LMA);
        vmcs::write(GuestNatural::Dr7, DR7_RESERVED_ONE);
        vmcs::write(Guest64::Ia32Debugctl, 0);
        vmcs::write(Guest64::VmcsLinkPointer, u64::MAX);

        vmcs::write(Guest16::CsSelector, L2_CODE);
        vmcs::write(GuestNatural::CsBase, 0);
        vmcs::write(Guest32::CsLimit, u32::MAX);
        vmcs::write(Guest32::CsAccessRights, CODE_ACCESS);
        let data_segments = [
            (Guest16::SsSelector, GuestNatural::SsBase, Guest32::SsLimit, Guest32::SsAccessRights),
            (Guest16::DsSelector, GuestNatural::DsBase, Guest32::DsLimit, Guest32::DsAccessRights),
            (Guest16::EsSelector, GuestNatural::EsBase, Guest32::EsLimit, Guest32::EsAccessRights),
            (Guest16::FsSelector, GuestNatural::FsBase, Guest32::FsLimit, Guest32::FsAccessRights),
            (Guest16::GsSelector, GuestNatural::GsBase, Guest32::GsLimit, Guest32::GsAccessRights),
        ];
        for (selector, base, limit, access) in data_segments {
            vmcs::write(selector, L2_DATA);
            vmcs::write(base, 0);
            vmcs::write(limit, u32::MAX);
            vmcs::write(access, DATA_ACCESS);
        }
        vmcs::write(Guest16::LdtrSelector, 0);
        vmcs::write(GuestNatural::LdtrBase, 0);
        vmcs::write(Guest32::LdtrLimit, 0);
        vmcs::write(Guest32::LdtrAccessRights, UNUSABLE);
        vmcs::write(Guest16::TrSelector, L2_TR);
        vmcs::write(GuestNatural::TrBase, L2_TSS);
        vmcs::write(Guest32::TrLimit, TSS_LIMIT);
        vmcs::write(Guest32::TrAccessRights, TR_ACCESS);
        vmcs::write(GuestNatural::GdtrBase, L2_GDT);
        vmcs::write(Guest32::GdtrLimit, 5 * 8 - 1);
        vmcs::write(GuestNatural::IdtrBase, L2_IDT);
        vmcs::write(Guest32::IdtrLimit, (u32::from(protocol::LAST_VECTOR) + 1) * 16 - 1);
        vmcs::write(Guest32::Ia32SysenterCs, 0);
        vmcs::write(GuestNatural::Ia32SysenterEsp, 0);
        vmcs::write(GuestNatural::Ia32SysenterEip, 0);
        vmcs::write(GuestNatural::PendingDebugExceptions, 0);
    }

    /// Points L2 at `entry` with a fresh stack, no pending events, cleared
    /// registers and mailbox, and the controls as `new` set them.
    pub fn start(&mut self, entry: u64) {
        self.registers = GuestRegisters::default();
        for offset in (0..PAGE_SIZE).step_by(8) {
            memory::write_u64(L2_MAILBOX + offset, 0);
        }
        vmcs::write(GuestNatural::Rip, entry);
        vmcs::write(GuestNatural::Rsp, L2_STACK_TOP);
        vmcs::write(GuestNatural::Rflags, RFLAGS_RESERVED_ONE);
        vmcs::write(Guest32::InterruptibilityState, 0);
        vmcs::write(Guest32::ActivityState, 0);
        vmcs::write(Control32::EntryInterruptionInfo, 0);
        vmcs::write(Control32::PinBasedControls, self.controls.pin);
        vmcs::write(Control32::ExitControls, self.controls.exit);
    }

    /// The VMCS's launch state as L1 tracks it; VMCLEAR makes it clear.
    pub fn set_launched(&mut self, launched: bool) {
        self.launched = launched;
    }

    /// Enters L2 with VMLAUNCH (`launch`) or VMRESUME, whatever L1 believes
    /// the launch state is, and returns what happened.
    pub fn enter_with(&mut self, launch: bool) -> Entry {
        // Safe because the current VMCS holds the host state filled in
        // `fill_vmcs` with RIP at the exit landing, and L2 uses no x87/SSE
        // state, so L1's stays as it is.
        match unsafe { enter_guest(&mut self.registers, !launch) } {
            Ok(()) => {
                let exit = Exit::read();
                if !exit.reason.is_entry_failure() {
                    self.launched = true;
                }
                Entry::Exited(exit)
            }
            Err(error @ VmxInstructionError::FailValid) => Entry::Failed(error, Some(InstructionError::current())),
            Err(error) => Entry::Failed(error, None),
        }
    }

    /// Runs L2 until its next exit; a failed entry fails the check with the
    /// VM-instruction error or the entry-failure exit reason.
    pub fn run(&mut self, report: &mut Report) -> Result<Exit, Failed> {
        match self.enter_with(!self.launched) {
            Entry::Exited(exit) if exit.reason.is_entry_failure() => fail!(report, "VM entry failed: {exit}"),
            Entry::Exited(exit) => Ok(exit),
            Entry::Failed(error, Some(number)) => fail!(report, "VM entry failed ({error:?}): {number}"),
            Entry::Failed(error, None) => fail!(report, "VM entry failed ({error:?}, no current VMCS)"),
        }
    }

    /// Runs L2 and requires an exit for `reason`. A VMCALL FAIL from L2
    /// instead is reported with L2's step, expected and seen values.
    pub fn run_expecting(&mut self, report: &mut Report, reason: ExitReason) -> Result<Exit, Failed> {
        let exit = self.run(report)?;
        if exit.is(reason) {
            return Ok(exit);
        }
        if exit.is(ExitReason::Vmcall) && self.registers.rax == command::FAIL {
            let r = &self.registers;
            fail!(report, "L2 step {}: expected {:#x}, saw {:#x}", r.rbx, r.rcx, r.rdx);
        }
        fail!(report, "expected a {} exit, saw {exit}", reason.name())
    }

    /// Runs L2 and requires the VMCALL with which a routine says it
    /// verified everything.
    pub fn run_to_done(&mut self, report: &mut Report) -> Result<Exit, Failed> {
        let exit = self.run_expecting(report, ExitReason::Vmcall)?;
        expect_eq!(report, "L2's VMCALL command", command::DONE, self.registers.rax);
        Ok(exit)
    }

    /// Runs L2 to a VMCALL that must carry `wanted`, then moves past it.
    pub fn run_to_command(&mut self, report: &mut Report, wanted: u64) -> Result<Exit, Failed> {
        let exit = self.run_expecting(report, ExitReason::Vmcall)?;
        expect_eq!(report, "L2's VMCALL command", wanted, self.registers.rax);
        self.skip(&exit);
        Ok(exit)
    }

    /// Moves L2's RIP past the instruction that exited, as if it had run:
    /// that also ends blocking by STI or MOV SS (SDM 27.3.1.5 would refuse
    /// to inject an interrupt into such a shadow).
    pub fn skip(&self, exit: &Exit) {
        vmcs::write(GuestNatural::Rip, exit.rip + u64::from(exit.instruction_length));
        let interruptibility = vmcs::read(Guest32::InterruptibilityState);
        vmcs::write(Guest32::InterruptibilityState, interruptibility & !BLOCKING_BY_STI_OR_MOV_SS);
    }

    /// Maps `guest` to `host`, failing the check on an EPT builder error.
    pub fn map(&mut self, report: &mut Report, guest: u64, host: u64, permissions: u64) -> Result<(), Failed> {
        if let Err(error) = self.ept.map(guest, host, permissions) {
            fail!(report, "EPT mapping of {guest:#x}: {error}");
        }
        Ok(())
    }
}

/// L2's page tables (1 GiB identity-mapped with 2 MiB pages), GDT, IDT and
/// TSS, and the pages the EPT checks hand out.
fn build_l2_memory() {
    for page in (L2_BASE..L2_MAPPED_END).step_by(PAGE_SIZE as usize) {
        memory::zero_page(page);
    }
    memory::write_u64(L2_PML4, L2_PDPT | PAGE_PRESENT_WRITABLE);
    memory::write_u64(L2_PDPT, L2_PAGE_DIRECTORY | PAGE_PRESENT_WRITABLE);
    for (index, page) in (0..L2_IDENTITY_MAPPED).step_by(1 << 21).enumerate() {
        memory::write_u64(L2_PAGE_DIRECTORY + 8 * index as u64, page | PAGE_PRESENT_WRITABLE | PAGE_LARGE);
    }

    for (index, entry) in L2_GDT_ENTRIES.iter().enumerate() {
        memory::write_u64(L2_GDT + 8 * index as u64, *entry);
    }
    let (low, high) = system_descriptor(L2_TSS, u64::from(TSS_LIMIT), 0x8b);
    memory::write_u64(L2_GDT + 8 * 3, low);
    memory::write_u64(L2_GDT + 8 * 4, high);
    for (vector, handler) in l2::event_stubs().iter().enumerate() {
        let gate_low = (handler & 0xffff)
            | u64::from(L2_CODE) << 16
            | 0x8e << 40 // present, ring 0, 64-bit interrupt gate, no IST
            | (handler >> 16 & 0xffff) << 48;
        memory::write_u64(L2_IDT + 16 * vector as u64, gate_low);
        memory::write_u64(L2_IDT + 16 * vector as u64 + 8, handler >> 32);
    }

    for page in [L2_EPT_HOLE, L2_READ_ONLY, L2_REMAPPED, FILL_PAGE, REMAP_PAGE_A, REMAP_PAGE_B] {
        memory::zero_page(page);
    }
    memory::write_u64(FILL_PAGE + protocol::HOLE_OFFSET, protocol::FILL_PATTERN);
    memory::write_u64(REMAP_PAGE_A, protocol::REMAP_PATTERN_A);
    memory::write_u64(REMAP_PAGE_B, protocol::REMAP_PATTERN_B);
}

/// A 16-byte system-segment descriptor (here: a busy 64-bit TSS).
fn system_descriptor(base: u64, limit: u64, access: u64) -> (u64, u64) {
    let low = (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | access << 40
        | (limit >> 16 & 0xf) << 48
        | (base >> 24 & 0xff) << 56;
    (low, base >> 32)
}

/// The EPT as the checks start from: the payload's pages read+execute,
/// L2's memory read+write, the read-only page read-only, the remapped page
/// on page A, the hole unmapped.
fn build_ept() -> Result<Ept<WorkRegion>, EptError> {
    let mut ept = Ept::new(WorkRegion, EPT_POOL_START, EPT_POOL_END)?;
    let (start, end) = l2::payload_pages();
    for page in (start..end).step_by(PAGE_SIZE as usize) {
        ept.map(page, page, READ | EXECUTE)?;
    }
    for page in (L2_BASE..L2_MAPPED_END).step_by(PAGE_SIZE as usize) {
        ept.map(page, page, READ | WRITE)?;
    }
    ept.map(L2_READ_ONLY, L2_READ_ONLY, READ)?;
    ept.map(L2_REMAPPED, REMAP_PAGE_A, READ)?;
    Ok(ept)
}

/// The mailbox quadword at `offset` (protocol::mailbox).
pub fn mailbox(offset: u64) -> u64 {
    memory::read_u64(L2_MAILBOX + offset)
}

pub fn set_mailbox(offset: u64, value: u64) {
    memory::write_u64(L2_MAILBOX + offset, value);
}
