//! Per-CPU state, reached through GS: each CPU's GS base points at its own
//! `PerCpu`, whose first word points at itself, so `current()` is one load.
//!
//! Only the bootstrap CPU runs today. Everything a CPU owns (descriptor
//! tables, interrupt stacks, later its VMXON region and current VMCS) hangs
//! off its `PerCpu`, so starting the others is a matter of allocating one
//! each and running `install` on them.

use alloc::boxed::Box;
use core::arch::asm;
use core::sync::atomic::{AtomicPtr, Ordering};

use l0_shim::memory::PhysAddr;
use spin::Once;
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

use crate::arch::cpu::write_msr;
use crate::arch::descriptors::{ist, new_tss, Gdt, Idt, IST_TOP_RESERVED};
use crate::arch::ring3::MonitorContext;

const IA32_GS_BASE: u32 = 0xc000_0101;
/// Must match IST_STACK_SIZE in boot.s.
pub const INTERRUPT_STACK_SIZE: u64 = 16 * 1024;
/// Below each interrupt stack lies an unmapped guard page.
pub const GUARD_PAGE_SIZE: u64 = 4096;

extern "C" {
    /// boot.s: IST_STACK_COUNT times [guard page, stack].
    static boot_cpu_interrupt_stacks: u8;
}

/// Where the bootstrap CPU's stack for IST slot `slot` (0-based) and its
/// guard page start.
pub fn boot_cpu_interrupt_stack(slot: usize) -> (u64, u64) {
    let base = core::ptr::addr_of!(boot_cpu_interrupt_stacks) as u64;
    let guard = base + slot as u64 * (GUARD_PAGE_SIZE + INTERRUPT_STACK_SIZE);
    (guard + GUARD_PAGE_SIZE, guard)
}

static BOOT_CPU_TSS: Once<TaskStateSegment> = Once::new();
static BOOT_CPU_GDT: Once<Gdt> = Once::new();
/// One IDT serves every CPU: the stubs and IST slots are the same for all.
static IDT: Once<Idt> = Once::new();

/// Loads the bootstrap CPU's GDT, TSS and the IDT. Runs first thing after
/// the console, so that every later fault is reported instead of silently
/// triple-faulting the machine.
pub fn install_boot_cpu_trap_tables() -> &'static Gdt {
    let tss = BOOT_CPU_TSS.call_once(|| {
        new_tss(core::array::from_fn(|slot| {
            let (bottom, _) = boot_cpu_interrupt_stack(slot);
            VirtAddr::new(bottom + INTERRUPT_STACK_SIZE)
        }))
    });
    let gdt = BOOT_CPU_GDT.call_once(|| Gdt::new(tss));
    gdt.load();
    IDT.call_once(|| Idt::new(gdt.selectors.kernel_code)).load();
    gdt
}

#[repr(C)]
pub struct PerCpu {
    /// Must stay the first field: `current()` reads it at GS:0.
    this: *const PerCpu,
    pub index: u32,
    pub apic_id: u32,
    pub gdt: &'static Gdt,
    pub tss: &'static TaskStateSegment,
    /// Set once this CPU is in VMX root operation.
    pub vmxon_region: Once<PhysAddr>,
    /// The monitor running on this CPU in ring 3, if one is: where a trap
    /// from ring 3 saves its registers.
    running_monitor: AtomicPtr<MonitorContext>,
}

// Safe because a PerCpu is only mutated by its own CPU, before it is shared.
unsafe impl Sync for PerCpu {}

/// Creates the bootstrap CPU's per-CPU block and points GS at it.
pub fn init_boot_cpu(gdt: &'static Gdt) -> &'static PerCpu {
    let apic_id = crate::arch::cpu::cpuid(1, 0).ebx >> 24;
    let tss = BOOT_CPU_TSS.get().expect("the trap tables are installed first");
    let per_cpu = install(Box::new(PerCpu {
        this: core::ptr::null(),
        index: 0,
        apic_id,
        gdt,
        tss,
        vmxon_region: Once::new(),
        running_monitor: AtomicPtr::new(core::ptr::null_mut()),
    }));
    for slot in 0..ist::COUNT {
        let (bottom, _) = boot_cpu_interrupt_stack(slot);
        let word = bottom + INTERRUPT_STACK_SIZE - IST_TOP_RESERVED;
        // Safe because the word lies in the reserved top of this CPU's
        // interrupt stack, above any frame (see descriptors::new_tss), and
        // only traps.s reads it.
        unsafe { core::ptr::write_volatile(word as *mut u64, per_cpu as *const PerCpu as u64) };
    }
    per_cpu
}

impl PerCpu {
    pub fn tss_address(&self) -> u64 {
        self.tss as *const TaskStateSegment as u64
    }

    /// Publishes (or with null, withdraws) the context of the monitor
    /// about to run on this CPU.
    pub fn set_running_monitor(&self, context: *mut MonitorContext) {
        self.running_monitor.store(context, Ordering::Relaxed);
    }

    pub fn running_monitor(&self) -> *mut MonitorContext {
        self.running_monitor.load(Ordering::Relaxed)
    }
}

fn install(per_cpu: Box<PerCpu>) -> &'static PerCpu {
    let per_cpu = Box::leak(per_cpu);
    per_cpu.this = per_cpu;
    // Safe because the block lives forever (leaked) and GS is not used for
    // anything else in the shim.
    unsafe { write_msr(IA32_GS_BASE, per_cpu as *const PerCpu as u64) };
    per_cpu
}

pub fn current() -> &'static PerCpu {
    let this: *const PerCpu;
    // Safe because GS:0 holds the self-pointer of this CPU's leaked block
    // once `install` ran, which happens before anything calls `current`.
    unsafe { asm!("mov {}, gs:[0]", out(reg) this, options(nostack, readonly, preserves_flags)) };
    // Safe because the block is leaked and never freed.
    unsafe { &*this }
}
