//! Arithmetic for timing the TSC against the PIT.

/// The 8254 PIT's input clock, in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// The PIT count that lasts `micros` microseconds (rounded to nearest).
pub fn pit_count_for_micros(micros: u64) -> u64 {
    (micros * PIT_HZ + 500_000) / 1_000_000
}

/// The microseconds `count` PIT ticks last (rounded to nearest).
pub fn pit_micros(count: u64) -> u64 {
    (count * 1_000_000 + PIT_HZ / 2) / PIT_HZ
}

/// The TSC frequency in kHz given `tsc_ticks` elapsed over `pit_ticks`.
pub fn tsc_khz(tsc_ticks: u64, pit_ticks: u64) -> u64 {
    if pit_ticks == 0 {
        return 0;
    }
    let khz = u128::from(tsc_ticks) * u128::from(PIT_HZ) / u128::from(pit_ticks) / 1000;
    u64::try_from(khz).unwrap_or(u64::MAX)
}

/// Whether `measured` is within `percent` % of `expected`.
pub fn within_percent(measured: u64, expected: u64, percent: u64) -> bool {
    u128::from(measured.abs_diff(expected)) * 100 <= u128::from(expected) * u128::from(percent)
}

/// The signed deviation of `measured` from `expected`, in tenths of a percent.
pub fn deviation_permille(measured: u64, expected: u64) -> i64 {
    if expected == 0 {
        return 0;
    }
    let diff = (i128::from(measured) - i128::from(expected)) * 1000 / i128::from(expected);
    i64::try_from(diff).unwrap_or(i64::MAX)
}

/// The median of a small set (sorts it in place); 0 for none.
pub fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pit_counts() {
        assert_eq!(pit_count_for_micros(10_000), 11_932);
        assert_eq!(pit_count_for_micros(50_000), 59_659);
        assert_eq!(pit_micros(59_659), 50_000);
        assert_eq!(pit_micros(0), 0);
    }

    #[test]
    fn tsc_frequency() {
        // 20 million TSC ticks over 10 ms of PIT time is 2 GHz.
        assert_eq!(tsc_khz(20_000_000, 11_932), 1_999_969);
        assert_eq!(tsc_khz(5, 0), 0);
        assert_eq!(tsc_khz(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn tolerance() {
        assert!(within_percent(1_050_000, 1_000_000, 5));
        assert!(!within_percent(1_050_001, 1_000_000, 5));
        assert!(within_percent(950_000, 1_000_000, 5));
        assert!(within_percent(0, 0, 0));
        assert_eq!(deviation_permille(1_050_000, 1_000_000), 50);
        assert_eq!(deviation_permille(900_000, 1_000_000), -100);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut [5, 1, 3]), 3);
        assert_eq!(median(&mut [4, 1, 3, 2]), 3);
        assert_eq!(median(&mut []), 0);
    }
}
