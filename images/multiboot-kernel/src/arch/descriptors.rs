//! The GDT, the TSSs and the IDT.
//!
//! The tables are statics made of atomics: filled once at boot with plain
//! stores, then only read by the processor. Every gate uses an IST stack
//! (see boot.s for why); the double fault, NMI and machine check get their
//! own, so a fault while handling a fault can still be reported. Each
//! processor has its own TSS (a TSS in use is marked busy, and its IST
//! stacks must be its own); they share the GDT and the IDT.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Selectors, matching the boot GDT in boot.s for code and data.
pub const CODE64_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
/// The boot processor's TSS; each AP's is 16 bytes further.
pub const TSS_SELECTOR: u16 = 0x18;

/// Processors with a TSS: the BSP and the APs boot.s has stacks for.
pub const MAX_CPUS: usize = 4;
/// Each AP stack (kernel, interrupt, double fault) in boot.s's `ap_stacks`.
const AP_STACK_SIZE: u64 = 16 * 1024;

/// Vectors with a gate: the 32 exceptions, the PIC's 16 interrupts and
/// the IPI vector of the `smp` check.
pub const VECTOR_COUNT: usize = 49;
/// Vectors that run on the second interrupt stack.
const NMI: usize = 2;
const DOUBLE_FAULT: usize = 8;
const MACHINE_CHECK: usize = 18;

const IST_INTERRUPTS: u8 = 1;
const IST_DOUBLE_FAULT: u8 = 2;

/// GDT entries: null, 64-bit code, data, then the two halves of each
/// processor's TSS descriptor.
static GDT: [AtomicU64; 3 + 2 * MAX_CPUS] = [const { AtomicU64::new(0) }; 3 + 2 * MAX_CPUS];
/// The 104-byte 64-bit TSSs, as 32-bit words (their 64-bit fields are only 4-byte aligned).
static TSS: [[AtomicU32; 26]; MAX_CPUS] = [const { [const { AtomicU32::new(0) }; 26] }; MAX_CPUS];
/// Two quadwords per 16-byte gate.
static IDT: [AtomicU64; 2 * VECTOR_COUNT] = [const { AtomicU64::new(0) }; 2 * VECTOR_COUNT];

extern "C" {
    static trap_stub_table: [u64; VECTOR_COUNT];
    static interrupt_stack_top: u8;
    static double_fault_stack_top: u8;
    static ap_stacks: u8;
}

/// The top of AP `cpu`'s stack `which` (0 kernel, 1 interrupts, 2 double
/// fault) in boot.s's `ap_stacks`.
fn ap_stack_top(cpu: usize, which: u64) -> u64 {
    let base = core::ptr::addr_of!(ap_stacks) as u64 + (cpu as u64 - 1) * 3 * AP_STACK_SIZE;
    base + (which + 1) * AP_STACK_SIZE
}

/// The stack AP `cpu` (1..MAX_CPUS) starts on.
pub fn ap_kernel_stack_top(cpu: usize) -> u64 {
    ap_stack_top(cpu, 0)
}

/// A pseudo-descriptor for LGDT/LIDT.
#[repr(C, packed)]
struct TablePointer {
    limit: u16,
    base: u64,
}

/// Builds and loads the GDT (with processor `cpu`'s TSS) and the IDT:
/// the BSP (0) at boot, each AP (1..MAX_CPUS) when it starts.
pub fn install(cpu: usize) {
    assert!(cpu < MAX_CPUS, "no TSS for processor {cpu}");
    GDT[1].store(0x00af_9a00_0000_ffff, Relaxed); // 64-bit code, ring 0
    GDT[2].store(0x00cf_9200_0000_ffff, Relaxed); // flat data

    let own = &TSS[cpu];
    let ist = |index: u8, top: u64| {
        let word = 9 + 2 * usize::from(index - 1); // IST1 is at byte offset 36
        own[word].store(top as u32, Relaxed);
        own[word + 1].store((top >> 32) as u32, Relaxed);
    };
    if cpu == 0 {
        ist(IST_INTERRUPTS, core::ptr::addr_of!(interrupt_stack_top) as u64);
        ist(IST_DOUBLE_FAULT, core::ptr::addr_of!(double_fault_stack_top) as u64);
    } else {
        ist(IST_INTERRUPTS, ap_stack_top(cpu, 1));
        ist(IST_DOUBLE_FAULT, ap_stack_top(cpu, 2));
    }
    own[25].store(104 << 16, Relaxed); // I/O map base beyond the limit: no bitmap

    let tss = own.as_ptr() as u64;
    let limit = (core::mem::size_of_val(own) - 1) as u64;
    let low = (limit & 0xffff)
        | (tss & 0xff_ffff) << 16
        | 0x89 << 40 // present, 64-bit TSS (available)
        | (limit >> 16 & 0xf) << 48
        | (tss >> 24 & 0xff) << 56;
    GDT[3 + 2 * cpu].store(low, Relaxed);
    GDT[4 + 2 * cpu].store(tss >> 32, Relaxed);
    let tss_selector = TSS_SELECTOR + 16 * cpu as u16;

    // Safe because the stub table is static data assembled in traps.s.
    let stubs = unsafe { &trap_stub_table };
    for (vector, &handler) in stubs.iter().enumerate() {
        let ist = if matches!(vector, NMI | DOUBLE_FAULT | MACHINE_CHECK) { IST_DOUBLE_FAULT } else { IST_INTERRUPTS };
        let low = (handler & 0xffff)
            | u64::from(CODE64_SELECTOR) << 16
            | u64::from(ist) << 32
            | 0x8e << 40 // present, ring 0, 64-bit interrupt gate
            | (handler >> 16 & 0xffff) << 48;
        IDT[2 * vector].store(low, Relaxed);
        IDT[2 * vector + 1].store(handler >> 32, Relaxed);
    }

    let gdt = TablePointer { limit: (core::mem::size_of_val(&GDT) - 1) as u16, base: GDT.as_ptr() as u64 };
    let idt = TablePointer { limit: (core::mem::size_of_val(&IDT) - 1) as u16, base: IDT.as_ptr() as u64 };
    // Safe because the new GDT has the boot GDT's code and data
    // descriptors at the same selectors (so the loaded segment registers
    // stay valid without a reload), the TSS descriptor points at this
    // processor's own static TSS whose stacks are reserved in boot.s, and
    // every IDT gate points at a stub in traps.s.
    unsafe {
        asm!(
            "lgdt [{gdt}]",
            "ltr {tss:x}",
            "lidt [{idt}]",
            gdt = in(reg) &gdt,
            idt = in(reg) &idt,
            tss = in(reg) tss_selector,
            options(readonly, nostack, preserves_flags),
        )
    };
}

/// Where the GDT, the IDT and the TSS are: a hypervisor puts them in its
/// VMCS host-state area, which VM exits load.
pub fn gdt_base() -> u64 {
    GDT.as_ptr() as u64
}

pub fn idt_base() -> u64 {
    IDT.as_ptr() as u64
}

pub fn tss_base() -> u64 {
    TSS.as_ptr() as u64
}

/// Loads an IDT with no gates: the next exception cannot be delivered,
/// nor can the #GP and #DF that follow, and the processor shuts down.
pub fn load_empty_idt() {
    let empty = TablePointer { limit: 0, base: 0 };
    // Safe in the sense that matters: nothing is delivered through this
    // IDT; its only purpose is to end the run with a triple fault.
    unsafe { asm!("lidt [{}]", in(reg) &empty, options(readonly, nostack, preserves_flags)) };
}
