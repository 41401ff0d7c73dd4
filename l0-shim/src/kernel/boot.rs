//! The boot sequence of the bootstrap CPU.

use alloc::format;
use alloc::vec::Vec;

use l0_shim::boot_options::{self, BootOptions, IdleAction, SelfTest};
use l0_shim::layout::phys_to_virt;
use log::{error, info, warn, LevelFilter};
use multiboot2::{BootInformation, BootInformationHeader};

use crate::arch::cpu::rdtsc;
use crate::arch::local_apic;
use crate::kernel::configuration::{self, Configuration};
use crate::kernel::control_plane::{ControlPlane, NoGuests};
use crate::kernel::guest_images::Uploads;
use crate::kernel::guests::{self, Guest};
use crate::kernel::shutdown::{power_off, set_exit_method, Outcome};
use crate::kernel::{console, heap, memory, msr_bitmap, percpu, tsc, vmx_root, vmx_smoke};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const MULTIBOOT2_BOOTLOADER_MAGIC: u64 = 0x36d7_6289;

pub fn start(boot_magic: u64, boot_info_phys: u64) -> ! {
    let banner_tsc = rdtsc();
    console::init(LevelFilter::Info);
    crate::println!("Matryoshka L0 shim {VERSION}: nested virtualization for Intel VT-x");
    crate::println!("boot to banner: {banner_tsc} TSC ticks");
    let gdt = percpu::install_boot_cpu_trap_tables();

    if boot_magic != MULTIBOOT2_BOOTLOADER_MAGIC {
        fatal(format_args!("not started by a multiboot2 loader (magic {boot_magic:#x})"));
    }
    // Safe because a multiboot2 loader passed this address (magic checked)
    // and the trampoline's tables map all of the first 4 GiB, where loaders
    // put the structure, at the direct map.
    let loader_info = unsafe { BootInformation::load(phys_to_virt(boot_info_phys) as *const BootInformationHeader) }
        .unwrap_or_else(|error| fatal(format_args!("the multiboot2 boot information is unreadable: {error:?}")));
    let options = apply_boot_options(&loader_info);

    let boot = memory::init(&loader_info, boot_info_phys)
        .unwrap_or_else(|error| fatal(format_args!("memory setup failed: {error}")));
    let (heap_used, _) = heap::used_and_free();
    let free = memory::with_frames(|frames| frames.free_bytes());
    info!(
        "memory: {} MiB usable RAM in the loader's map, {} MiB free for guests; heap {} MiB ({} KiB used)",
        boot.usable_bytes() >> 20,
        free >> 20,
        memory::heap_size() >> 20,
        heap_used >> 10,
    );
    let cpu = percpu::init_boot_cpu(gdt);
    info!("cpu {}: APIC id {}, trap tables and per-CPU data ready", cpu.index, cpu.apic_id);
    info!("tsc: {} kHz, measured against the PIT", tsc::khz());
    let protections = crate::arch::cpu::harden_for_ring3();
    info!("ring 3 (monitors): {protections}");
    local_apic::disable_legacy_pic();
    if local_apic::init() {
        info!("local APIC: x2APIC mode, timer {} counts per 2^20 TSC ticks", local_apic::counts_per_mebitick());
    } else {
        warn!("local APIC: no x2APIC, so monitors run without a time budget");
    }

    if let Some(test) = options.self_test.filter(|test| *test != SelfTest::VmxSmoke) {
        run_self_test(test);
    }

    let configuration = configuration::load(&boot, &options);
    if let (None, Configuration::Loaded { parsed, .. }) = (options.log_level, &configuration) {
        console::set_level(level_filter(parsed.config.shim.log_level));
    }
    let vmx = vmx_root::enable();
    match &vmx {
        Err(error) => error!("{error}"),
        // The MSR bitmap all vCPUs share, built now: it lives as long as the
        // shim, so a guest's creation and removal leave free memory as it was.
        Ok(_) => {
            msr_bitmap::address();
        }
    }
    if vmx.is_ok() && options.self_test == Some(SelfTest::VmxSmoke) {
        match vmx_smoke::run() {
            Ok(status) => info!("vmx-smoke: passed, guest exit status {status}"),
            Err(error) => fatal(format_args!("vmx-smoke: {error}")),
        }
    }

    // Started before the guests, so that it can be polled while they run.
    let settings = match &configuration {
        Configuration::Loaded { parsed, .. } => parsed.config.shim.clone(),
        _ => matryoshka_config::ShimSettings::default(),
    };
    let mut control = ControlPlane::start(&settings);

    let clean = vmx.is_ok() && configuration.is_clean();
    let mut not_started = Vec::new();
    let mut rejected = Vec::new();
    // Kept after they end: the control API still reports them.
    let mut guests = Vec::new();
    if let Configuration::Loaded { file, parsed } = &configuration {
        for (index, config) in parsed.config.guests.iter().enumerate() {
            let created = match &vmx {
                Ok(capabilities) => {
                    let hook = options.monitor_fault(&config.name);
                    Guest::create(config, &boot, &Uploads::default(), capabilities, index as u16 + 1, hook)
                }
                Err(error) => Err(format!("no VMX: {error}")),
            };
            match created {
                Ok(guest) => guests.push(guest),
                Err(error) => {
                    error!("guest {}: cannot be created: {error}", config.name);
                    not_started.push(format!("guest {}: not-started ({error})", config.name));
                }
            }
        }
        for guest in &parsed.rejected_guests {
            let name = guest.name.as_deref().unwrap_or("(unnamed)");
            rejected.push(format!("guest {name}: rejected (configuration errors in {file} from line {})", guest.line));
        }
    }
    let serve = options.idle == IdleAction::Serve;
    let print = |lines: &[alloc::string::String]| {
        for line in not_started.iter().chain(lines).chain(&rejected) {
            crate::println!("{line}");
        }
    };
    match &vmx {
        Ok(capabilities) => {
            let mut ended = guests::run_all(&mut guests, &boot, capabilities, control.as_mut());
            loop {
                print(&ended);
                let Some(control) = control.as_mut().filter(|_| serve) else { break };
                // Every guest has ended; the API still shows them, their
                // consoles and why they stopped, and may start them (or new
                // ones) again.
                control.serve_until_a_guest_runs(&mut guests, &boot, capabilities);
                ended = guests::run_all(&mut guests, &boot, capabilities, Some(control));
            }
        }
        Err(error) => {
            print(&[]);
            if let Some(control) = control.as_mut().filter(|_| serve) {
                let reason = format!("no VMX: {error}");
                control.serve_forever(&mut NoGuests { reason, vmx: None });
            }
        }
    }
    if serve && control.is_none() {
        warn!("idle=serve: there is no control plane to serve (see above)");
    }
    power_off(if clean { Outcome::Success } else { Outcome::Failure })
}

fn level_filter(level: matryoshka_config::LogLevel) -> LevelFilter {
    use matryoshka_config::LogLevel;
    match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

/// The shim's command line decides the log level and how the machine ends;
/// a bad word is reported and its default used.
fn apply_boot_options<'a>(info: &'a BootInformation<'a>) -> BootOptions<'a> {
    let command_line = info.command_line_tag().and_then(|tag| tag.cmdline().ok()).unwrap_or("");
    let options = boot_options::parse(command_line, |_| {});
    set_exit_method(options.exit);
    if let Some(level) = options.log_level {
        console::set_level(level);
    }
    info!("command line: '{command_line}'");
    // A second pass reports the bad words now that the log level is final
    // (parsing is cheap and allocation-free; collecting would need a heap).
    boot_options::parse(command_line, |warning| warn!("{warning}"));
    options
}

/// Provokes a fault on purpose: tests use it to prove that the reports work.
fn run_self_test(test: SelfTest) {
    warn!("self test {test:?}: provoking a fault on purpose");
    match test {
        SelfTest::PageFault => {
            // The lower half is unmapped in the shim's tables.
            let unmapped = 0x10 as *const u64;
            // Safe in the sense that matters: the read faults and the
            // handler stops the machine; nothing is ever read.
            let value = unsafe { core::ptr::read_volatile(unmapped) };
            error!("self test: reading an unmapped page returned {value:#x}");
        }
        SelfTest::Panic => panic!("self test: deliberate panic"),
        SelfTest::VmxSmoke => unreachable!("runs after VMXON, in start()"),
        SelfTest::StackOverflow => {
            let depth = recurse_forever(0);
            error!("self test: recursion returned at depth {depth}");
        }
    }
}

/// Recurses until the stack runs into its guard page (the depth limit only
/// exists to make the recursion look bounded to the compiler: 16 GiB of
/// stack is never reached).
#[inline(never)]
fn recurse_forever(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    if depth == 1 << 25 {
        return depth;
    }
    recurse_forever(depth + 1) + frame[depth as usize % 64]
}

/// Stops the machine with a message when booting cannot go on.
pub fn fatal(message: core::fmt::Arguments) -> ! {
    error!("{message}");
    power_off(Outcome::Failure)
}
