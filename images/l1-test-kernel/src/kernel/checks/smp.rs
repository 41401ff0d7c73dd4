//! `smp`: the other processors start, and interrupts go between them.
//!
//! Asserts: the ACPI MADT lists `expect-cpus` enabled processors, the BSP
//! (this one, by its local APIC ID) first; each AP starts through INIT,
//! SIPI (a second SIPI only if the first did not start it, as the MP
//! protocol allows) into real mode at the trampoline page, reaches 64-bit
//! mode and reports CPUID.1's initial APIC ID and its local APIC's ID
//! register, both equal to its MADT entry; then, three times over, the BSP
//! sends each AP a fixed IPI, which wakes it from HLT, and each AP answers
//! with an IPI that interrupts the BSP while it runs. The APs are left
//! halted with interrupts enabled.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};

use l1_test_kernel::madt::{self, PhysicalMemory};
use multiboot_kernel::boot_info::physical;

use super::{fail, note, require, Context, Report};
use crate::arch::cpu::{self, cpuid, rdtsc};
use crate::arch::descriptors::{self, MAX_CPUS};
use crate::arch::smp::{self, apic_read, apic_write, TRAMPOLINE_PAGE};

const APIC_ID: u32 = 0x20;
const APIC_EOI: u32 = 0xb0;
const APIC_SVR: u32 = 0xf0;
const APIC_ICR_LOW: u32 = 0x300;
const APIC_ICR_HIGH: u32 = 0x310;
/// SVR: the APIC enabled, spurious vector 0xff.
const SVR_ENABLED: u32 = 0x1ff;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
/// INIT, level-triggered, assert; then the same de-asserted (what the MP
/// specification's start-up sequence sends).
const ICR_INIT_ASSERT: u32 = 0xc500;
const ICR_INIT_DEASSERT: u32 = 0x8500;
const ICR_STARTUP: u32 = 0x0600;
/// The vector of the IPIs this check sends (its gate is in traps.s).
pub const IPI_VECTOR: u8 = 0x30;
const ROUNDS: u32 = 3;
/// How long to wait for an AP or an IPI, in TSC ticks: generous, since an
/// emulated vCPU may wait for a whole time slice of the others.
const TIMEOUT_TICKS: u64 = 1_000_000_000;

/// Set by the BSP before it starts an AP: which TSS and stacks it takes.
static BOOTING_CPU: AtomicUsize = AtomicUsize::new(0);
/// What each AP saw: CPUID.1's initial APIC ID and its APIC ID register.
static STARTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static CPUID_APIC_ID: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
static REGISTER_APIC_ID: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(u32::MAX) }; MAX_CPUS];
/// IPIs taken, by the APIC ID of the processor that took them.
static IPIS_TAKEN: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
static BSP_APIC_ID: AtomicU32 = AtomicU32::new(0);

struct Physical;

impl PhysicalMemory for Physical {
    /// Unmapped memory reads as zeros: the parser then finds no table.
    fn read(&self, address: u64, buffer: &mut [u8]) {
        match physical(address, buffer.len()) {
            Some(bytes) => buffer.copy_from_slice(bytes),
            None => buffer.fill(0),
        }
    }
}

fn own_apic_id() -> u32 {
    apic_read(APIC_ID) >> 24
}

fn send_ipi(apic_id: u32, low: u32) {
    apic_write(APIC_ICR_HIGH, apic_id << 24);
    apic_write(APIC_ICR_LOW, low);
    let start = rdtsc();
    while apic_read(APIC_ICR_LOW) & ICR_DELIVERY_PENDING != 0 && rdtsc() - start < TIMEOUT_TICKS {
        core::hint::spin_loop();
    }
}

/// Waits until `done` holds or the timeout passes; whether it held.
fn wait_for(done: impl Fn() -> bool) -> bool {
    let start = rdtsc();
    while !done() {
        if rdtsc() - start > TIMEOUT_TICKS {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Called for [`IPI_VECTOR`] on any processor.
pub fn ipi_received() {
    IPIS_TAKEN[own_apic_id() as usize & 0xff].fetch_add(1, SeqCst);
    apic_write(APIC_EOI, 0);
}

fn taken(apic_id: u32) -> u32 {
    IPIS_TAKEN[apic_id as usize & 0xff].load(SeqCst)
}

pub fn run(context: &Context, report: &mut Report) {
    let processors = match madt::processors(&Physical) {
        Ok(processors) => processors,
        Err(error) => return fail!(report, "MADT: {error}"),
    };
    let ids = processors.apic_ids();
    note!(report, "MADT: {} processors, APIC IDs {ids:?}", ids.len());
    let expected = context.options.expect.cpus as usize;
    require!(report, ids.len() == expected, "processors: expected {expected}, the MADT lists {}", ids.len());
    let bsp = own_apic_id();
    BSP_APIC_ID.store(bsp, SeqCst);
    require!(report, ids.first() == Some(&bsp), "the BSP (APIC ID {bsp}) is not the MADT's first processor");
    if ids.len() > MAX_CPUS {
        return fail!(report, "this kernel starts at most {MAX_CPUS} processors");
    }
    if ids.len() < 2 {
        return;
    }
    if !trampoline_page_is_free(context) {
        return fail!(report, "the trampoline page {TRAMPOLINE_PAGE:#x} is not free RAM");
    }
    apic_write(APIC_SVR, SVR_ENABLED);
    let vector = smp::install_trampoline();
    for (cpu, &id) in ids.iter().enumerate().skip(1) {
        smp::set_ap_stack(descriptors::ap_kernel_stack_top(cpu));
        BOOTING_CPU.store(cpu, SeqCst);
        send_ipi(id, ICR_INIT_ASSERT);
        send_ipi(id, ICR_INIT_DEASSERT);
        send_ipi(id, ICR_STARTUP | u32::from(vector));
        let mut started = wait_for(|| STARTED[cpu].load(SeqCst));
        if !started {
            note!(report, "AP {id}: no start after one SIPI; sending the second");
            send_ipi(id, ICR_STARTUP | u32::from(vector));
            started = wait_for(|| STARTED[cpu].load(SeqCst));
        }
        if !started {
            fail!(report, "AP {id} did not start (SIPI vector {vector:#x})");
            continue;
        }
        let (by_cpuid, by_register) = (CPUID_APIC_ID[cpu].load(SeqCst), REGISTER_APIC_ID[cpu].load(SeqCst));
        note!(report, "AP {id} started: CPUID initial APIC ID {by_cpuid}, APIC ID register {by_register}");
        require!(report, by_cpuid == id, "AP {id}: CPUID.1 reports initial APIC ID {by_cpuid}");
        require!(report, by_register == id, "AP {id}: its APIC ID register reads {by_register}");
    }
    let aps: usize = (1..ids.len()).filter(|&cpu| STARTED[cpu].load(SeqCst)).count();
    if aps == 0 {
        return;
    }

    // Interrupts on at the BSP: only the APs' IPIs can come (boot masked
    // the PIC), and each is counted by `ipi_received`.
    cpu::enable_interrupts();
    for round in 1..=ROUNDS {
        for (cpu, &id) in ids.iter().enumerate().skip(1) {
            if STARTED[cpu].load(SeqCst) {
                send_ipi(id, u32::from(IPI_VECTOR));
            }
        }
        let everyone = || {
            let replies = taken(bsp) == round * aps as u32;
            let delivered =
                ids.iter().enumerate().skip(1).all(|(cpu, &id)| !STARTED[cpu].load(SeqCst) || taken(id) == round);
            replies && delivered
        };
        if !wait_for(everyone) {
            cpu::disable_interrupts();
            let counts: [u32; MAX_CPUS] = core::array::from_fn(|cpu| ids.get(cpu).map_or(0, |&id| taken(id)));
            return fail!(report, "IPI round {round}: IPIs taken by processor (MADT order): {counts:?}");
        }
    }
    cpu::disable_interrupts();
    note!(report, "IPIs: each of {aps} APs took {ROUNDS} from the BSP and answered each one");
}

/// The trampoline page must be RAM the memory map offers and hold none of
/// the loader's structures.
fn trampoline_page_is_free(context: &Context) -> bool {
    let page = TRAMPOLINE_PAGE..TRAMPOLINE_PAGE + 4096;
    let in_ram = context.boot.regions().iter().any(|region| {
        region.is_available() && region.base <= page.start && region.end().is_some_and(|end| end >= page.end)
    });
    let info = u64::from(context.boot.address);
    in_ram && !page.contains(&info)
}

/// Where an AP arrives from boot.s in 64-bit mode, on the stack the BSP
/// set: it reports, then answers IPIs for good.
#[no_mangle]
extern "C" fn ap_main() -> ! {
    let cpu = BOOTING_CPU.load(SeqCst);
    descriptors::install(cpu);
    CPUID_APIC_ID[cpu].store(cpuid(1, 0).ebx >> 24, SeqCst);
    REGISTER_APIC_ID[cpu].store(own_apic_id(), SeqCst);
    apic_write(APIC_SVR, SVR_ENABLED);
    STARTED[cpu].store(true, SeqCst);
    let own = own_apic_id();
    let mut answered = 0;
    loop {
        cpu::wait_for_interrupt();
        cpu::disable_interrupts();
        while answered < taken(own) {
            send_ipi(BSP_APIC_ID.load(SeqCst), u32::from(IPI_VECTOR));
            answered += 1;
        }
    }
}
