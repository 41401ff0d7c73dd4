//! `work=N`: numbered progress lines with some computation between them,
//! so several guests running side by side visibly interleave.

/// Rounds of the mixing loop between two lines: a few million
/// instructions, a blink under QEMU and a fraction of a second in Bochs.
const ROUNDS_PER_STEP: u64 = 1 << 20;

pub fn run(steps: u64) {
    let mut state = 0x243f_6a88_85a3_08d3u64;
    for step in 1..=steps {
        for round in 0..ROUNDS_PER_STEP {
            // xorshift64, folded with the round so it cannot be skipped.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state = state.wrapping_add(round);
        }
        say!("work {step}/{steps} checksum {:#018x}", core::hint::black_box(state));
    }
}
