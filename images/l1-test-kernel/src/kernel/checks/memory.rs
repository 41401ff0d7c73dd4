//! `memory`: the RAM the loader describes is there, and is distinct.
//!
//! Asserts: the multiboot info has a memory map (flag 6) whose entries are
//! well formed, with available RAM, no empty or wrapping region and no
//! overlapping available regions; mem_lower is at most 640 KiB; the kernel
//! image lies in available RAM. Then it writes an address-derived pattern
//! over all available RAM above the kernel and below 4 GiB (16 quadwords
//! per page, or every quadword with `memory-dense=1`), reads it all back,
//! and does it again with every bit flipped. Reports the MiB tested.

use l1_test_kernel::memory_test::{pattern, sample_addresses};
use l1_test_kernel::multiboot::{available_ranges, check_memory_map, is_available};

use super::{fail, note, require, Context, Report};
use crate::kernel::start::kernel_range;

/// The identity mapping, and so the test, ends here.
const MAPPED_LIMIT: u64 = 1 << 32;
const MIB: u64 = 1 << 20;
/// Mismatches reported one by one before only counting the rest.
const REPORTED_MISMATCHES: u64 = 5;

pub fn run(context: &Context, report: &mut Report) {
    let boot = context.boot;
    if boot.header.memory_map.is_none() {
        fail!(report, "multiboot info: expected a memory map (flag 6), flags are {:#x}", boot.header.flags);
        return;
    }
    let regions = boot.regions();
    for region in regions {
        note!(
            report,
            "map: {:#012x}-{:#012x} {}",
            region.base,
            region.base.saturating_add(region.length),
            region.kind_name()
        );
    }
    if let Some(error) = boot.map_error {
        fail!(report, "memory map: entry at offset {} has size {}, expected at least 20", error.offset, error.size);
    }
    if boot.regions_dropped > 0 {
        note!(report, "map: {} more entries not read", boot.regions_dropped);
    }
    if let Err(problem) = check_memory_map(regions) {
        fail!(report, "memory map: expected a sane map, but: {problem}");
        return;
    }
    if let Some((lower, upper)) = boot.header.basic_memory {
        note!(report, "mem_lower {lower} KiB, mem_upper {upper} KiB");
        require!(report, lower <= 640, "mem_lower: expected at most 640 KiB, saw {lower} KiB");
    }
    let available: u64 = regions.iter().filter(|r| r.is_available()).map(|r| r.length).sum();
    let (kernel_start, kernel_end) = kernel_range();
    require!(
        report,
        is_available(regions, kernel_start, kernel_end),
        "kernel image {kernel_start:#x}-{kernel_end:#x}: expected it inside available RAM, it is not"
    );

    let dense = context.options.dense_memory_test;
    let ranges = || available_ranges(regions, kernel_end, MAPPED_LIMIT);
    let tested: u64 = ranges().map(|(start, end)| end - start).sum();
    let mut mismatches = 0;
    for inverted in [false, true] {
        for (start, end) in ranges() {
            for address in sample_addresses(start, end, dense) {
                // Safe because the address is in available RAM above this
                // kernel's image (which holds its code, stack and tables),
                // identity-mapped, and nothing lives there: the boot
                // information was copied before any check ran.
                unsafe { (address as *mut u64).write_volatile(pattern(address, inverted)) };
            }
        }
        for (start, end) in ranges() {
            for address in sample_addresses(start, end, dense) {
                // Safe as for the write above.
                let seen = unsafe { (address as *const u64).read_volatile() };
                let wanted = pattern(address, inverted);
                if seen != wanted {
                    mismatches += 1;
                    if mismatches <= REPORTED_MISMATCHES {
                        fail!(report, "RAM at {address:#x}: wrote {wanted:#018x}, read {seen:#018x}");
                    }
                }
            }
        }
    }
    if mismatches > REPORTED_MISMATCHES {
        fail!(report, "RAM: {mismatches} mismatching quadwords in all");
    }
    let above_mapping: u64 = regions
        .iter()
        .filter(|r| r.is_available())
        .filter_map(|r| r.end().map(|end| end.saturating_sub(r.base.max(MAPPED_LIMIT))))
        .sum();
    note!(
        report,
        "{} MiB available; tested {} MiB above the kernel ({}, 2 passes){}",
        available / MIB,
        tested / MIB,
        if dense { "every quadword" } else { "16 quadwords per page" },
        if above_mapping > 0 { "; RAM above 4 GiB is not mapped and not tested" } else { "" }
    );
}
