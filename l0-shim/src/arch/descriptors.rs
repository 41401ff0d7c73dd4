//! Per-CPU descriptor tables: the GDT with its TSS (whose interrupt stack
//! table gives every trap a known-good stack), and the IDT shared by all CPUs.

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

/// Interrupt-stack-table slots (1-based, as the IDT names them). Every vector
/// runs on an IST stack because the precompiled core library assumes a red
/// zone below RSP that an interrupt frame pushed in place would destroy.
pub mod ist {
    pub const EXCEPTION: u8 = 1;
    pub const DOUBLE_FAULT: u8 = 2;
    pub const NMI: u8 = 3;
    pub const MACHINE_CHECK: u8 = 4;
    pub const INTERRUPT: u8 = 5;
    pub const COUNT: usize = 5;
}

pub const TRAP_VECTORS: usize = 256;
/// The one gate a monitor (ring 3) may use: `int 0x80` returns to the shim.
pub const MONITOR_RETURN_VECTOR: u8 = 0x80;
/// Distance between the entry stubs in traps.s.
const TRAP_STUB_SIZE: u64 = 16;

/// The interrupt stack that serves `vector`.
pub fn ist_for_vector(vector: u8) -> u8 {
    match vector {
        2 => ist::NMI,
        8 => ist::DOUBLE_FAULT,
        18 => ist::MACHINE_CHECK,
        0..=31 => ist::EXCEPTION,
        _ => ist::INTERRUPT,
    }
}

/// Bytes reserved at the top of every interrupt stack, above the frame the
/// CPU pushes: the first word holds the CPU's per-CPU block, so that an
/// entry from ring 3 (where GS is the monitor's) can find it.
pub const IST_TOP_RESERVED: u64 = 16;

/// A TSS whose interrupt stack table holds `stack_tops` for slots 1..=COUNT
/// (each minus the reserved words). RSP0 is the interrupt stack too, though
/// every gate names its own IST slot.
pub fn new_tss(stack_tops: [VirtAddr; ist::COUNT]) -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    for (slot, top) in stack_tops.into_iter().enumerate() {
        tss.interrupt_stack_table[slot] = top - IST_TOP_RESERVED;
    }
    tss.privilege_stack_table[0] = stack_tops[usize::from(ist::INTERRUPT) - 1] - IST_TOP_RESERVED;
    tss
}

#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub tss: SegmentSelector,
    /// Ring-3 segments for the monitors (RPL 3).
    pub user_code: SegmentSelector,
    pub user_data: SegmentSelector,
}

pub struct Gdt {
    table: GlobalDescriptorTable,
    pub selectors: Selectors,
}

impl Gdt {
    pub fn new(tss: &'static TaskStateSegment) -> Self {
        let mut table = GlobalDescriptorTable::new();
        let kernel_code = table.append(Descriptor::kernel_code_segment());
        let kernel_data = table.append(Descriptor::kernel_data_segment());
        let tss = table.append(Descriptor::tss_segment(tss));
        let user_data = table.append(Descriptor::user_data_segment());
        let user_code = table.append(Descriptor::user_code_segment());
        let user_data = SegmentSelector(user_data.0 | 3);
        let user_code = SegmentSelector(user_code.0 | 3);
        Self { table, selectors: Selectors { kernel_code, kernel_data, tss, user_code, user_data } }
    }

    /// Makes this GDT and its TSS the current CPU's.
    pub fn load(&'static self) {
        self.table.load();
        // Safe because the selectors index descriptors of the GDT just
        // loaded, which lives forever ('static), and the TSS is fresh
        // (not busy) since each CPU gets its own.
        unsafe {
            CS::set_reg(self.selectors.kernel_code);
            SS::set_reg(self.selectors.kernel_data);
            DS::set_reg(self.selectors.kernel_data);
            ES::set_reg(self.selectors.kernel_data);
            load_tss(self.selectors.tss);
        }
    }
}

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct InterruptGate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

const GATE_PRESENT_INTERRUPT_DPL0: u8 = 0x8e;
/// As above but callable from ring 3 with `int`: only the monitor's return
/// gate. Every other `int n` from ring 3 raises #GP.
const GATE_PRESENT_INTERRUPT_DPL3: u8 = 0xee;

/// The interrupt descriptor table. The x86_64 crate's typed table wants
/// `extern "x86-interrupt"` handlers, which stable Rust lacks, so the gates
/// point at the assembly stubs in traps.s.
#[repr(C, align(16))]
pub struct Idt {
    gates: [InterruptGate; TRAP_VECTORS],
}

extern "C" {
    static trap_stubs_start: u8;
}

impl Idt {
    pub fn new(code_selector: SegmentSelector) -> Self {
        let stubs = core::ptr::addr_of!(trap_stubs_start) as u64;
        let mut gates = [InterruptGate::default(); TRAP_VECTORS];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let handler = stubs + vector as u64 * TRAP_STUB_SIZE;
            *gate = InterruptGate {
                offset_low: handler as u16,
                selector: code_selector.0,
                ist: ist_for_vector(vector as u8),
                type_attributes: if vector == usize::from(MONITOR_RETURN_VECTOR) {
                    GATE_PRESENT_INTERRUPT_DPL3
                } else {
                    GATE_PRESENT_INTERRUPT_DPL0
                },
                offset_middle: (handler >> 16) as u16,
                offset_high: (handler >> 32) as u32,
                reserved: 0,
            };
        }
        Self { gates }
    }

    pub fn load(&'static self) {
        let pointer = DescriptorTablePointer {
            limit: (core::mem::size_of::<[InterruptGate; TRAP_VECTORS]>() - 1) as u16,
            base: VirtAddr::from_ptr(self.gates.as_ptr()),
        };
        // Safe because the table lives forever and every gate points at a
        // stub in traps.s with a valid code selector and IST slot.
        unsafe { lidt(&pointer) };
    }
}
