//! This CPU's local APIC, in x2APIC mode (MSR access), for one thing so
//! far: a one-shot timer that bounds how long a monitor may run. The VMX
//! preemption timer only counts in VMX non-root operation, so it cannot
//! bound code in ring 3 of root operation.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::cpu::{cpuid, outb, rdtsc, read_msr, write_msr};

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const X2APIC_EOI: u32 = 0x80b;
const X2APIC_SPURIOUS: u32 = 0x80f;
const X2APIC_LVT_TIMER: u32 = 0x832;
const X2APIC_INITIAL_COUNT: u32 = 0x838;
const X2APIC_CURRENT_COUNT: u32 = 0x839;
const X2APIC_DIVIDE: u32 = 0x83e;
const SPURIOUS_SOFTWARE_ENABLE: u64 = 1 << 8;
const SPURIOUS_VECTOR: u64 = 0xff;
const LVT_MASKED: u64 = 1 << 16;
const CPUID_1_ECX_X2APIC: u32 = 1 << 21;

/// The vector of the monitor budget timer.
pub const BUDGET_VECTOR: u8 = 0xf0;

/// Divide-configuration encodings for dividers 1, 2, 4, ..., 128 (SDM
/// 11.5.4: bits 0, 1 and 3).
const DIVIDE_ENCODINGS: [u64; 8] = [0b1011, 0b0000, 0b0001, 0b0010, 0b0011, 0b1000, 0b1001, 0b1010];

/// APIC timer counts (at divide 1) per 2^20 TSC ticks; 0 until calibrated,
/// which also means "no timer".
static COUNTS_PER_MEBITICK: AtomicU64 = AtomicU64::new(0);
static DIVIDER_SHIFT: AtomicU32 = AtomicU32::new(0);

/// Quietens the legacy 8259 PICs the firmware left running: their
/// vectors moved above the exceptions (0x20-0x2f) and every line masked.
/// Firmware points IRQ 0 (the PIT) at vector 8, so the first time the shim
/// opens interrupts (to run a monitor) a timer tick would look like a
/// double fault.
pub fn disable_legacy_pic() {
    const PRIMARY: u16 = 0x20;
    const SECONDARY: u16 = 0xa0;
    // Safe because these are the PICs' command and data ports, written in
    // the initialization sequence the 8259A defines (ICW1-ICW4), and no
    // other part of the shim uses the PICs.
    unsafe {
        outb(PRIMARY, 0x11);
        outb(SECONDARY, 0x11);
        outb(PRIMARY + 1, 0x20);
        outb(SECONDARY + 1, 0x28);
        outb(PRIMARY + 1, 0x04);
        outb(SECONDARY + 1, 0x02);
        outb(PRIMARY + 1, 0x01);
        outb(SECONDARY + 1, 0x01);
        outb(PRIMARY + 1, 0xff);
        outb(SECONDARY + 1, 0xff);
    }
}

/// Turns on x2APIC mode with every local interrupt masked and measures the
/// timer against the TSC. Returns false if this CPU has no x2APIC.
pub fn init() -> bool {
    if cpuid(1, 0).ecx & CPUID_1_ECX_X2APIC == 0 {
        return false;
    }
    // Safe because x2APIC mode is supported (checked above) and entered
    // from enabled xAPIC mode, the one legal transition (SDM 11.12.5); the
    // shim uses no xAPIC MMIO, so nothing depends on the old mode.
    unsafe {
        let base = read_msr(IA32_APIC_BASE);
        write_msr(IA32_APIC_BASE, base | APIC_BASE_ENABLE);
        write_msr(IA32_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        write_msr(X2APIC_SPURIOUS, SPURIOUS_SOFTWARE_ENABLE | SPURIOUS_VECTOR);
        write_msr(X2APIC_LVT_TIMER, LVT_MASKED | u64::from(BUDGET_VECTOR));
        write_msr(X2APIC_DIVIDE, DIVIDE_ENCODINGS[0]);
        write_msr(X2APIC_INITIAL_COUNT, u64::from(u32::MAX));
    }
    let start = rdtsc();
    while rdtsc() - start < 1 << 20 {
        core::hint::spin_loop();
    }
    let counted = u64::from(u32::MAX) - read_msr(X2APIC_CURRENT_COUNT);
    // Safe: stops the calibration count; the LVT stays masked.
    unsafe { write_msr(X2APIC_INITIAL_COUNT, 0) };
    COUNTS_PER_MEBITICK.store(counted.max(1), Ordering::Relaxed);
    true
}

/// The timer's rate against the TSC (counts per 2^20 ticks), 0 if none.
pub fn counts_per_mebitick() -> u64 {
    COUNTS_PER_MEBITICK.load(Ordering::Relaxed)
}

/// Interrupts with BUDGET_VECTOR after about `tsc_ticks`; false if there
/// is no timer.
pub fn arm_budget(tsc_ticks: u64) -> bool {
    let rate = counts_per_mebitick();
    if rate == 0 {
        return false;
    }
    let counts = (u128::from(tsc_ticks) * u128::from(rate)) >> 20;
    // The smallest divider that fits the count in 32 bits.
    let shift = (0..8u32).find(|shift| counts >> shift <= u128::from(u32::MAX)).unwrap_or(7);
    let count = (counts >> shift).clamp(1, u128::from(u32::MAX)) as u64;
    // Safe because x2APIC mode is on (rate != 0 only after `init`) and
    // these registers only program this CPU's timer.
    unsafe {
        if DIVIDER_SHIFT.swap(shift, Ordering::Relaxed) != shift {
            write_msr(X2APIC_DIVIDE, DIVIDE_ENCODINGS[shift as usize]);
        }
        write_msr(X2APIC_LVT_TIMER, u64::from(BUDGET_VECTOR));
        write_msr(X2APIC_INITIAL_COUNT, count);
    }
    true
}

/// Stops the budget timer. An interrupt it raised meanwhile may still be
/// pending; the caller lets it in where it is harmless.
pub fn disarm_budget() {
    if counts_per_mebitick() == 0 {
        return;
    }
    // Safe: only this CPU's timer, in x2APIC mode.
    unsafe {
        write_msr(X2APIC_INITIAL_COUNT, 0);
        write_msr(X2APIC_LVT_TIMER, LVT_MASKED | u64::from(BUDGET_VECTOR));
    }
}

/// Ends the interrupt in service.
pub fn end_of_interrupt() {
    if counts_per_mebitick() == 0 {
        return;
    }
    // Safe: writing 0 to EOI only retires the in-service interrupt.
    unsafe { write_msr(X2APIC_EOI, 0) };
}
