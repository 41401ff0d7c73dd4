//! Hardware access: the only part of the kernel that touches ports, control
//! registers, MSRs, descriptor tables and VMX instructions directly. Each
//! `unsafe` block here says why it is sound; everything above is safe Rust.

pub mod cpu;
pub mod descriptors;
pub mod local_apic;
pub mod mmio;
pub mod pci;
pub mod ring3;
pub mod serial;
// The VMX instruction wrappers and the VM entry/exit stub, shared with the
// L1 test hypervisor.
pub use ::vmx_instructions;

core::arch::global_asm!(include_str!("boot.s"));
core::arch::global_asm!(include_str!("traps.s"));
core::arch::global_asm!(include_str!("monitor_switch.s"));
core::arch::global_asm!(include_str!("vmx_smoke_guest.s"));

extern "C" {
    static vmx_smoke_guest_start: u8;
    static vmx_smoke_guest_end: u8;
}

/// The code of the VMX smoke-test guest (vmx_smoke_guest.s).
pub fn vmx_smoke_guest_code() -> &'static [u8] {
    let start = core::ptr::addr_of!(vmx_smoke_guest_start);
    let end = core::ptr::addr_of!(vmx_smoke_guest_end);
    // Safe because both symbols delimit one read-only byte range in .rodata.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}
