//! The run: boot information and command line, the work region, VMX
//! bring-up (`vmx-enable`, `vmcs-load`), the VMCS and L2's world, the
//! selected checks, the verdict.

use l1_hypervisor::cmdline::{ExitMethod, Options};
use l1_hypervisor::layout;
use multiboot_kernel::arch::descriptors;
use multiboot_kernel::arch::port::outb;
use multiboot_kernel::boot_info::BootInfo;
use multiboot_kernel::devices::uart;

use super::checks;
use super::exit::{exit, stop_bochs_too, ExitCode};
use super::guest::Vm;
use super::report::Report;
use super::vmx_root;
use crate::arch::memory;

extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
}

#[derive(Debug, Default)]
struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn record(&mut self, passed: bool) -> bool {
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        passed
    }

    /// Prints the summary and ends the run.
    fn finish(&self) -> ! {
        say!("done: {} passed, {} failed", self.passed, self.failed);
        exit(if self.failed == 0 { ExitCode::Passed } else { ExitCode::Failed })
    }
}

/// Masks every line of both 8259A PICs. L1 runs with interrupts off, but
/// L2 enables them for the injection check, and with external-interrupt
/// exiting off a timer interrupt the firmware left running would reach
/// L2's IDT.
fn mask_pic() {
    const MASTER_DATA: u16 = 0x21;
    const SLAVE_DATA: u16 = 0xa1;
    for port in [MASTER_DATA, SLAVE_DATA] {
        // Safe because writing the interrupt mask only stops the PICs from
        // raising interrupts; they cannot reach memory.
        unsafe { outb(port, 0xff) };
    }
}

pub fn start(multiboot_info: u32) -> ! {
    uart::init();
    descriptors::install(0);
    mask_pic();
    let (start, end) = (core::ptr::addr_of!(__kernel_start) as u64, core::ptr::addr_of!(__kernel_end) as u64);
    say!("Matryoshka L1 test hypervisor at {start:#x}-{end:#x}");

    let boot = BootInfo::read(multiboot_info);
    say!("command line: {}", boot.cmdline());
    let mut tally = Tally::default();
    let options = Options::parse(boot.cmdline(), |problem| {
        say!("cmdline: FAIL {problem}");
        tally.failed += 1;
    });
    if options.exit == ExitMethod::Bochs {
        stop_bochs_too();
    }

    if let Err(problem) = layout::check(boot.regions(), end) {
        say!("FATAL: work region: {problem}");
        exit(ExitCode::Crashed);
    }
    memory::claim();

    let mut report = Report::new("vmx-enable");
    let enabled = vmx_root::enable(&mut report);
    let capabilities = match enabled {
        Ok(capabilities) => {
            report.finish(Ok(()));
            tally.passed += 1;
            capabilities
        }
        Err(failed) => {
            tally.record(report.finish(Err(failed)));
            tally.finish()
        }
    };
    let mut report = Report::new("vmcs-load");
    let loaded = vmx_root::load_vmcs(&mut report, &capabilities);
    if !tally.record(report.finish(loaded)) {
        tally.finish();
    }
    let mut report = Report::new("vmcs-setup");
    let mut vm = match Vm::new(&mut report, capabilities) {
        Ok(vm) => {
            tally.record(report.finish(Ok(())));
            vm
        }
        Err(failed) => {
            tally.record(report.finish(Err(failed)));
            tally.finish()
        }
    };

    for check in options.checks() {
        tally.record(checks::run(check, &mut vm, &options));
    }
    tally.finish()
}
