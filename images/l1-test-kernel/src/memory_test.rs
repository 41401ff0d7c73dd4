//! The pattern the memory check writes.
//!
//! Each quadword's value is derived from its own address, and the whole
//! range is written before any of it is read back, so two guest pages that
//! a broken EPT maps onto the same host page show up as a mismatch in one of
//! them, and so does a page that is not backed at all.

/// Distance between the quadwords a sparse pass touches: 16 per 4 KiB page.
pub const SPARSE_STRIDE: u64 = 256;

/// The value written at `address`; the inverted pass flips every bit, so
/// each bit of a sampled word is seen both as 0 and as 1.
pub fn pattern(address: u64, inverted: bool) -> u64 {
    let mixed = address.rotate_left(29) ^ address.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a_a5a5_0ff0_f00f;
    if inverted {
        !mixed
    } else {
        mixed
    }
}

/// The addresses of the quadwords a pass over `[start, end)` touches.
pub fn sample_addresses(start: u64, end: u64, dense: bool) -> impl Iterator<Item = u64> {
    let stride = if dense { 8 } else { SPARSE_STRIDE };
    (start..end).step_by(stride as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_and_passes_differ() {
        assert_ne!(pattern(0x10_0000, false), pattern(0x10_0008, false));
        assert_ne!(pattern(0x10_0000, false), pattern(0x11_0000, false));
        assert_eq!(pattern(0x10_0000, true), !pattern(0x10_0000, false));
    }

    #[test]
    fn aliased_pages_get_distinct_values() {
        // Every sampled offset of two pages 4 KiB apart differs.
        for offset in (0..4096).step_by(8) {
            assert_ne!(pattern(0x20_0000 + offset, false), pattern(0x20_1000 + offset, false));
        }
    }

    #[test]
    fn samples() {
        assert_eq!(sample_addresses(0x1000, 0x2000, false).count(), 16);
        assert_eq!(sample_addresses(0x1000, 0x2000, true).count(), 512);
        assert_eq!(sample_addresses(0x1000, 0x1000, true).count(), 0);
    }
}
