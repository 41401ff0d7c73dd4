//! `bench=N`: the cost of a round trip through the hypervisor, in TSC
//! ticks, for two kinds of exit: CPUID (always exits) and a read of a port
//! nobody claims (an I/O exit the device model answers). Under Bochs with
//! `clock: sync=none` a tick is one retired instruction, so the figures are
//! exact and repeatable.

use crate::arch::cpu::{cpuid, rdtsc};
use crate::arch::port::inb;

pub fn run(rounds: u64, unclaimed_port: u16) {
    let cpuid_ticks = measure(rounds, || {
        core::hint::black_box(cpuid(0, 0));
    });
    say!("bench: cpuid round trip: {} ticks (min {}, {rounds} rounds)", cpuid_ticks.mean, cpuid_ticks.min);
    let io_ticks = measure(rounds, || {
        // Safe because the port is one no device claims: reading it has no
        // effect beyond the exit itself.
        core::hint::black_box(unsafe { inb(unclaimed_port) });
    });
    say!(
        "bench: port {unclaimed_port:#x} read round trip: {} ticks (min {}, {rounds} rounds)",
        io_ticks.mean,
        io_ticks.min
    );
}

struct Ticks {
    mean: u64,
    min: u64,
}

fn measure(rounds: u64, mut operation: impl FnMut()) -> Ticks {
    let rounds = rounds.max(1);
    let mut min = u64::MAX;
    let start = rdtsc();
    for _ in 0..rounds {
        let before = rdtsc();
        operation();
        min = min.min(rdtsc() - before);
    }
    Ticks { mean: (rdtsc() - start) / rounds, min }
}
