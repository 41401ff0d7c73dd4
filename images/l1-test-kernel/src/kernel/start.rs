//! The run: bring-up, then what the command line asks for, in a fixed
//! order (hostile modes, checks, work, bench, crash), then the verdict.

use l1_test_kernel::cmdline::Options;
use l1_test_kernel::multiboot::BOOTLOADER_MAGIC;

use super::boot_info::BootInfo;
use super::checks::{self, Context};
use super::devices::{pic, uart};
use super::exit::{exit, ExitCode};
use super::modes;
use crate::arch::{cpu, descriptors};

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

/// The physical range the kernel image (with .bss and stacks) occupies.
pub fn kernel_range() -> (u64, u64) {
    (core::ptr::addr_of!(__kernel_start) as u64, core::ptr::addr_of!(__kernel_end) as u64)
}

#[derive(Debug, Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn record(&mut self, passed: bool) {
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

pub fn start(multiboot_info: u32, efer_nxe: bool) -> ! {
    uart::init();
    descriptors::install(0);
    pic::init();
    let (start, end) = kernel_range();
    say!("booted by a multiboot loader (EAX {BOOTLOADER_MAGIC:#x}), kernel at {start:#x}-{end:#x}");
    say!("long mode with SSE: CR0 {:#x}, CR4 {:#x}, EFER.NXE {}", cpu::read_cr0(), cpu::read_cr4(), efer_nxe as u8);

    let boot = BootInfo::read(multiboot_info);
    say!("multiboot info at {:#x}, flags {:#x}", boot.address, boot.header.flags);
    if let Some(name) = boot.loader_name() {
        say!("loader: {name}");
    }
    say!("command line: {}", boot.cmdline());

    let mut tally = Tally::default();
    let options = Options::parse(boot.cmdline(), |problem| {
        say!("cmdline: FAIL {problem}");
        tally.failed += 1;
    });
    let context = Context { options: &options, boot: &boot, efer_nxe };

    for hostile in options.hostile() {
        tally.record(modes::hostile::run(hostile, &context));
    }
    for check in options.checks() {
        tally.record(checks::run(check, &context));
    }
    if options.work > 0 {
        modes::work::run(options.work);
    }
    if options.bench > 0 {
        modes::bench::run(options.bench, options.unclaimed_port);
    }
    // A crash that works never returns; one that returns was survived.
    let survived_crash = match options.crash {
        Some(crash) => {
            modes::crash::run(crash);
            true
        }
        None => false,
    };

    say!("done: {} passed, {} failed", tally.passed, tally.failed);
    exit(match (survived_crash, tally.failed) {
        (true, _) => ExitCode::Survived,
        (false, 0) => ExitCode::Passed,
        (false, _) => ExitCode::Failed,
    })
}
