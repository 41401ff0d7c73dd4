//! `pit`: the 8254 as a clock and as an interrupt source through the 8259A.
//!
//! Asserts: channel 2's output (port 0x61 bit 5) is low right after a
//! one-shot is programmed and rises when it expires; the TSC advances over
//! those windows, and when `expect-tsc-khz` is given, the rate measured
//! against them is within `tsc-tolerance` percent (the measured value is
//! always printed). Then channel 0 in mode 2 at 100 Hz with only IRQ 0
//! unmasked: the IMR reads back, the latched count is within the period,
//! IRQ 0 arrives on vector 0x20 about as often as it should over 250 ms
//! (between half and twice), no other IRQ arrives, and HLT wakes up on it.

use core::fmt;

use l1_test_kernel::timing::{deviation_permille, median, pit_count_for_micros, tsc_khz, within_percent, PIT_HZ};

use super::{fail, note, require, Context, Report};
use crate::arch::cpu::{self, rdtsc};
use crate::kernel::devices::{pic, pit};
use crate::kernel::traps;

const WINDOW_MICROS: u64 = 10_000;
const WINDOWS: usize = 5;
/// Channel 0's period: 11932 ticks, 100 Hz (a Linux HZ=100 tick).
const TICK_COUNT: u16 = 11_932;
const TICK_INTERVAL_MICROS: u64 = 250_000;
const HLT_WAKEUPS: usize = 3;
const TIMER_IRQ: u8 = 0;

pub fn run(context: &Context, report: &mut Report) {
    measure_tsc(context, report);
    count_timer_interrupts(report);
}

fn measure_tsc(context: &Context, report: &mut Report) {
    let count = pit_count_for_micros(WINDOW_MICROS);
    let mut rates = [0u64; WINDOWS];
    for rate in &mut rates {
        pit::start_one_shot(count as u16);
        let start = rdtsc();
        let already_high = pit::one_shot_expired();
        let waited = pit::wait_one_shot();
        let end = rdtsc();
        pit::stop_one_shot();
        if already_high {
            fail!(report, "channel 2 mode 0: expected OUT2 low right after the count was loaded, it was high");
            return;
        }
        if waited.is_err() {
            fail!(report, "channel 2 mode 0: expected OUT2 to rise after {count} ticks, it never did");
            return;
        }
        *rate = tsc_khz(end.wrapping_sub(start), count);
    }
    let runs = rates;
    let measured = median(&mut rates);
    note!(report, "TSC against {WINDOWS} channel-2 windows of {WINDOW_MICROS} us: {measured} kHz (runs {runs:?} kHz)");
    require!(report, measured > 0, "TSC: expected it to advance over {WINDOW_MICROS} us of PIT time, it did not");
    if let Some(expected) = context.options.expect.tsc_khz {
        let tolerance = context.options.expect.tsc_tolerance_percent;
        let deviation = Permille(deviation_permille(measured, expected));
        if within_percent(measured, expected, tolerance) {
            note!(report, "measured TSC is {deviation} from the expected {expected} kHz (tolerance {tolerance}%)");
        } else {
            fail!(report, "TSC: expected {expected} kHz within {tolerance}%, measured {measured} kHz ({deviation})");
        }
    }
}

fn count_timer_interrupts(report: &mut Report) {
    traps::reset_irq_counts();
    pic::init();
    pit::start_periodic(TICK_COUNT);
    pic::unmask_only(1 << TIMER_IRQ);
    let masks = pic::masks();
    require!(report, masks == !(1 << TIMER_IRQ), "PIC IMR: wrote {:#06x}, read {masks:#06x}", !(1u16 << TIMER_IRQ));
    let latched = pit::read_periodic_count();
    require!(report, latched <= TICK_COUNT, "channel 0 latched count: expected at most {TICK_COUNT}, read {latched}");

    cpu::enable_interrupts();
    let waited = pit::wait_micros(TICK_INTERVAL_MICROS);
    cpu::disable_interrupts();
    let ticks = traps::irq_count(TIMER_IRQ);
    let expected = TICK_INTERVAL_MICROS * PIT_HZ / u64::from(TICK_COUNT) / 1_000_000;
    note!(
        report,
        "IRQ 0 at {} Hz: {ticks} interrupts in {} ms (expected about {expected})",
        PIT_HZ / u64::from(TICK_COUNT),
        TICK_INTERVAL_MICROS / 1000
    );
    if waited.is_err() {
        fail!(report, "channel 2 mode 0: expected OUT2 to rise while timing the interrupts, it never did");
    }
    let tick_range = expected / 2..=expected * 2;
    require!(
        report,
        tick_range.contains(&u64::from(ticks)),
        "IRQ 0: expected {tick_range:?} interrupts on vector 0x20, saw {ticks}"
    );
    let others: u32 = (1..16).map(traps::irq_count).sum();
    require!(report, others == 0, "masked IRQs: expected none, saw {others} (spurious {})", traps::spurious_count());

    if ticks > 0 {
        for wakeup in 1..=HLT_WAKEUPS {
            let before = traps::irq_count(TIMER_IRQ);
            cpu::wait_for_interrupt();
            cpu::disable_interrupts();
            let after = traps::irq_count(TIMER_IRQ);
            if after == before {
                fail!(report, "HLT {wakeup}: expected IRQ 0 to end it, but it returned without one");
                break;
            }
        }
    }
    pic::mask_all();
    pit::stop_periodic();
}

/// Tenths of a percent, shown as a signed percentage.
struct Permille(i64);

impl fmt::Display for Permille {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "+" };
        write!(f, "{sign}{}.{}%", self.0.unsigned_abs() / 10, self.0.unsigned_abs() % 10)
    }
}
