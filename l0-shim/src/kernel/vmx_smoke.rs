//! selftest=vmx-smoke: runs the smallest possible guest through VM entry,
//! a few exits and resumes, and its end through the debug-exit port. It
//! checks the shim's VMX mechanism (VMCS, EPT01, entry/exit path, FPU
//! switch) on its own, without the monitor.

use alloc::format;
use alloc::string::String;

use log::info;
use vmx::exit::{ExitReason, ExitReasonField, IoDirection, IoInstruction};
use vmx::vmcs::{GuestNatural, ReadOnly32, ReadOnly64, ReadOnlyNatural};

use crate::arch::cpu::cpuid;
use crate::arch::vmx_instructions::GuestRegisters;
use crate::arch::vmx_smoke_guest_code;
use crate::kernel::guest_ram::GuestRam;
use crate::kernel::vcpu::{FlatProtectedStart, Vcpu};
use crate::kernel::{vmcs, vmx_root};

const LOAD_ADDRESS: u64 = 0x10_0000;
const COM1: u16 = 0x3f8;
const DEBUG_EXIT: u16 = 0xf4;
const CPUID_VMX: u32 = 1 << 5;
const SMOKE_VPID: u16 = 1;

/// Runs the smoke guest; returns its exit status or why it failed.
pub fn run() -> Result<u32, String> {
    let capabilities = vmx_root::capabilities().ok_or("VMX is not enabled")?;
    let mut ram = GuestRam::new(4 << 20).map_err(|error| format!("{error}"))?;
    ram.write(LOAD_ADDRESS, vmx_smoke_guest_code())?;
    let start = FlatProtectedStart {
        rip: LOAD_ADDRESS,
        registers: GuestRegisters::default(),
        code_selector: 0x08,
        data_selector: 0x10,
        gdtr: None,
    };
    let mut vcpu = Vcpu::new(capabilities, ram.eptp(), ram.host_range(), SMOKE_VPID, &start)
        .map_err(|error| format!("{error}"))?;
    let mut line = String::new();
    let mut exits = 0u64;
    loop {
        vcpu.run(u64::MAX).map_err(|error| format!("{error}"))?;
        exits += 1;
        let exit = ExitReasonField(vmcs::read(ReadOnly32::ExitReason));
        let qualification = vmcs::read(ReadOnlyNatural::ExitQualification);
        if exit.is_entry_failure() {
            return Err(format!("VM entry failed: exit reason {:?}, qualification {qualification:#x}", exit.reason()));
        }
        match exit.reason() {
            Ok(ExitReason::Cpuid) => {
                let leaf = cpuid(vcpu.registers.rax as u32, vcpu.registers.rcx as u32);
                let ecx = if vcpu.registers.rax as u32 == 1 { leaf.ecx & !CPUID_VMX } else { leaf.ecx };
                set_low_32(&mut vcpu.registers, [leaf.eax, leaf.ebx, ecx, leaf.edx]);
            }
            Ok(ExitReason::IoInstruction) => {
                let io = IoInstruction::decode(qualification).ok_or("undecodable I/O exit")?;
                match (io.direction, io.port) {
                    (IoDirection::Out, COM1) => match vcpu.registers.rax as u8 {
                        b'\n' => info!("vmx-smoke guest: {}", core::mem::take(&mut line)),
                        byte => line.push(char::from(byte)),
                    },
                    (IoDirection::Out, DEBUG_EXIT) => {
                        let status = ((vcpu.registers.rax as u32) << 1) | 1;
                        info!("vmx-smoke: guest ended through the debug-exit port after {exits} exits");
                        return Ok(status);
                    }
                    (IoDirection::In, _) => vcpu.registers.rax |= 0xffff_ffff,
                    (IoDirection::Out, _) => {}
                }
            }
            Ok(ExitReason::Hlt) => return Err("the guest halted before the debug-exit port".into()),
            Ok(ExitReason::TripleFault) => return Err("the guest triple-faulted".into()),
            Ok(ExitReason::EptViolation) => {
                let gpa = vmcs::read(ReadOnly64::GuestPhysicalAddress);
                return Err(format!("EPT violation at guest-physical {gpa:#x}"));
            }
            other => return Err(format!("unexpected exit {other:?}, qualification {qualification:#x}")),
        }
        skip_instruction();
    }
}

fn set_low_32(registers: &mut GuestRegisters, [eax, ebx, ecx, edx]: [u32; 4]) {
    registers.rax = u64::from(eax);
    registers.rbx = u64::from(ebx);
    registers.rcx = u64::from(ecx);
    registers.rdx = u64::from(edx);
}

fn skip_instruction() {
    let length = u64::from(vmcs::read(ReadOnly32::ExitInstructionLength));
    vmcs::write(GuestNatural::Rip, vmcs::read(GuestNatural::Rip) + length);
}
