//! Guests running under the shim on Bochs: the L1 test kernel checks its
//! virtual platform, and misbehaving guests end alone.

mod common;

use common::{boot, boot_with};
use matryoshka_tests::{Emulator, Exit, HostForward, ImageBuilder, MachineConfig, NicModel};

#[test]
fn the_l1_test_kernel_passes_every_platform_check() {
    let image = ImageBuilder::scenario("l1-test").unwrap_or_else(|e| panic!("{e}"));
    let mut machine = boot(image, Emulator::bochs());
    machine.expect("guest l1-test: created");
    machine.expect("[l1-test] l1-test: booted by a multiboot loader");
    for check in ["cpuid", "msr", "io", "pit", "rtc", "memory"] {
        machine.expect(&format!("[l1-test] l1-test: {check}: PASS"));
    }
    // Reported, not asserted: costs belong in `make bench`.
    let cpuid = machine.expect("[l1-test] l1-test: bench: cpuid round trip:");
    let io = machine.expect("[l1-test] l1-test: bench: port 0x230 read round trip:");
    println!("{cpuid}\n{io}");
    machine.expect("[l1-test] l1-test: done: 6 passed, 0 failed");
    // Status 1 = (0 << 1) | 1: the kernel reported success.
    machine.expect("guest l1-test: stopped (debug exit, status 1)");
    machine.expect_exit(Exit::Success);
}

#[test]
fn a_guest_starts_its_aps_with_init_and_sipi_and_they_exchange_ipis() {
    let image = ImageBuilder::scenario("smp").unwrap_or_else(|e| panic!("{e}"));
    let mut machine = boot(image, Emulator::bochs());
    machine.expect("guest smp: created (32 MiB, 3 vCPUs");
    machine.expect("[smp] l1-test: smp: MADT: 3 processors, APIC IDs [0, 1, 2]");
    machine.expect("[smp] l1-test: smp: AP 1 started: CPUID initial APIC ID 1, APIC ID register 1");
    machine.expect("[smp] l1-test: smp: AP 2 started: CPUID initial APIC ID 2, APIC ID register 2");
    machine.expect("[smp] l1-test: smp: IPIs: each of 2 APs took 3 from the BSP and answered each one");
    machine.expect("[smp] l1-test: smp: PASS");
    machine.expect("[smp] l1-test: done: 2 passed, 0 failed");
    machine.expect("guest smp: stopped (debug exit, status 1)");
    machine.expect_exit(Exit::Success);
    let console = machine.machine.console();
    assert!(!console.contains("second SIPI"), "one SIPI starts an AP under the monitor:\n{console}");
}

#[test]
fn guests_that_crash_or_misbehave_end_alone_and_the_others_finish() {
    let image = ImageBuilder::scenario("isolation").unwrap_or_else(|e| panic!("{e}")).command_line(
        "monitor-fault=tampered:page-fault monitor-fault=stuck:hang monitor-fault=panicky:panic \
             monitor-fault=escaper:map-foreign monitor-fault=overreacher:forbidden-control",
    );
    let mut machine = boot(image, Emulator::bochs());
    let names =
        ["worker", "crasher", "wild", "hostile", "tampered", "stuck", "panicky", "rebooter", "escaper", "overreacher"];
    for name in names {
        machine.expect(&format!("guest {name}: created"));
    }
    // Four guests share the CPU: their consoles interleave, so each is
    // checked in the whole log rather than in order.
    machine.expect_exit(Exit::Success);
    let console = machine.machine.console();
    let has = |needle: &str| assert!(console.contains(needle), "missing '{needle}' in:\n{console}");
    has("[worker] l1-test: work 5/5");
    has("[worker] l1-test: done: 2 passed, 0 failed");
    has("[hostile] l1-test: hostile-devices: PASS");
    has("[hostile] l1-test: hostile-msrs: PASS");
    has("[hostile] l1-test: done: 5 passed, 0 failed");
    has("further #GPs for MSR accesses are counted, not logged");
    // The summary, one line per guest, in configuration order.
    let summary: Vec<&str> = console.lines().filter(|line| line.starts_with("guest ")).collect();
    assert_eq!(summary.len(), 10, "{summary:#?}");
    assert_eq!(summary[0], "guest worker: stopped (debug exit, status 1)");
    assert!(summary[1].starts_with("guest crasher: crashed (triple fault at RIP 0x"), "{}", summary[1]);
    assert!(
        summary[2]
            .starts_with("guest wild: crashed (write of guest-physical address 0xdead0000, where the guest has no RAM"),
        "{}",
        summary[2]
    );
    assert_eq!(summary[3], "guest hostile: stopped (debug exit, status 1)");
    // Monitors that fail end their own guest, with the reason. The page
    // fault is the test hook's read of 0x1000, below the monitor's image.
    assert!(
        summary[4].starts_with("guest tampered: failed (monitor fault: #PF (page fault) at RIP 0x")
            && summary[4].ends_with(", address 0x1000, error code 0x4)"),
        "{}",
        summary[4]
    );
    assert_eq!(summary[5], "guest stuck: failed (monitor stopped answering (no response in 500 ms))");
    assert!(
        summary[6].starts_with("guest panicky: failed (monitor error: monitor panic at monitor/image/src/main.rs:")
            && summary[6].ends_with(": test hook: panic on the first exit)"),
        "{}",
        summary[6]
    );
    // A reboot restarts the guest from its configuration, until it loops.
    assert_eq!(console.matches("guest rebooter: restarted (reboot: keyboard controller reset)").count(), 3);
    assert_eq!(
        summary[7],
        "guest rebooter: failed (3 restarts within 60 s, the last after: reboot: keyboard controller reset)"
    );
    // Monitors of nested guests that reach beyond their guest: refused.
    assert_eq!(
        summary[8],
        "guest escaper: failed (monitor error: the shim refused the monitor's EPT02 block of 0x1000 bytes at L1 \
         0x1000000 lies outside the guest's RAM)"
    );
    assert!(
        summary[9].starts_with("guest overreacher: failed (monitor error: the shim refused the monitor's write of Pin")
            && summary[9].contains("with bits 0x80 set, which vmcs02 never gets"),
        "{}",
        summary[9]
    );
}

/// Linux boots to its /init and runs a command, then waits; `netctl shutdown`
/// presses its ACPI power button and it powers off through ACPI S5.
#[test]
fn linux_boots_as_an_l1_guest_runs_a_command_and_powers_off_on_the_power_button() {
    const ADMIN: &str = "admin-secret-for-the-linux-test";
    let scenario = matryoshka_tests::workspace::scenarios_dir().join("linux");
    let text = std::fs::read_to_string(&scenario).expect("the linux scenario");
    // A control plane to ask through, and a command that waits for the
    // button (bounded: without the button it ends by itself, and the test
    // sees "run end" instead of the press).
    let shim_keys = format!("[shim]\nip = '10.0.2.15/24'\ntokens = ['role=admin,secret={ADMIN}']\n");
    let command = "grep -c ^processor /proc/cpuinfo";
    assert!(text.contains(command), "the linux scenario runs something else now");
    let text = text.replacen("[shim]\n", &shim_keys, 1).replacen(
        command,
        &format!("{command}; echo waiting for the power button; sleep 120"),
        1,
    );
    let builder = ImageBuilder::scenario("linux").unwrap_or_else(|e| panic!("{e}"));
    let builder = builder.config("scenarios/linux", &text);
    let forward = HostForward::from_free_port(7000).unwrap_or_else(|e| panic!("{e}")).with_nic(NicModel::E1000);
    let config = MachineConfig { network: Some(forward), ..MachineConfig::new(Emulator::bochs()) };
    let mut machine = boot_with(builder, config);
    machine.expect("guest linux: created");
    machine.expect("[linux] [    0.000000] Linux version 6.1");
    // Interrupts go through the emulated IOAPIC and local APIC.
    machine.expect("IOAPIC[0]: apic_id 0, version 17, address 0xfec00000, GSI 0-23");
    machine.expect("APIC: Switch to symmetric I/O mode setup");
    // Its second vCPU starts through INIT and SIPI.
    machine.expect("guest linux: vCPU 1: started by a SIPI at");
    machine.expect("smpboot: Total of 2 processors activated");
    machine.expect("[linux] matryoshka-guest: init started");
    machine.expect("[linux] matryoshka-guest: listening to the power button");
    machine.expect("[linux] matryoshka-guest: run begin");
    machine.expect("[linux] Linux (none) 6.1");
    machine.expect("[linux] 2"); // processors in /proc/cpuinfo
    machine.expect("[linux] waiting for the power button");

    let token = machine.dir.path().join("admin-token");
    std::fs::write(&token, ADMIN).expect("writing the token file");
    let address = forward.address();
    let netctl_words = |words: &[&str]| {
        let common = ["netctl", "--host", &address, "--token-file", token.to_str().unwrap(), "--retries", "20"];
        let args: Vec<String> = common.iter().chain(words).map(|word| word.to_string()).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = netctl::run(args, &mut out, &mut err);
        (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    };
    // Reported, not asserted: the console's throughput, reading Linux's
    // whole boot log at once (the first request also opens the connection).
    let started = std::time::Instant::now();
    let (code, console, err) = netctl_words(&["console", "linux"]);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(code, netctl::exit::OK, "{err}");
    assert!(console.contains("Linux version 6.1") && console.len() > 8 * 1024, "{console}");
    println!(
        "Bochs: netctl console read {} KiB of Linux's console in {:.0} ms: {:.0} KiB/s",
        console.len() / 1024,
        seconds * 1e3,
        console.len() as f64 / 1024.0 / seconds
    );
    let (code, out, err) = netctl_words(&["shutdown", "linux"]);
    assert_eq!((code, out.as_ref()), (netctl::exit::OK, "linux: shutting_down (asked to power off)\n"), "{err}");

    machine.expect("guest linux: power button pressed: the guest is told (SCI)");
    machine.expect("[linux] matryoshka-guest: power button pressed: powering off");
    // With ACPI tables Linux powers off through the PM1 control register (S5).
    machine.expect("guest linux: stopped (powered off: ACPI S5)");
    assert!(!machine.machine.console().contains("matryoshka-guest: run end"), "the command ended first");
    machine.expect_exit(Exit::Success);
}
