//! Linux KVM as the reference L0 (issue 7's reference column): the tiny
//! Linux of images/linux booted directly on Bochs's VMX, without the shim,
//! with kvm_intel nested=1, runs matryoshka-vmm (images/vmm) three times:
//! on the L1 test hypervisor, which needs VMX from KVM's nested support
//! (Bochs → Linux KVM (L0) → l1-hypervisor (L1) → its L2 payload); on the
//! same tiny Linux as a bzImage with its initramfs (the Linux boot protocol,
//! e820, the MP table); and on the L1 test kernel, which checks the platform
//! the VMM and KVM give it.

use std::time::{Duration, Instant};

use l1_hypervisor::cmdline::Check;
use matryoshka_tests::{workspace, Emulator, Exit, ImageBuilder, Machine, MachineConfig, StoppingLines};

/// The run ends with `poweroff -f` either way; the last VMM's (the L1 test
/// kernel's) status decides. vmm-run waits for the console to drain after
/// its line; /init's own last line may be cut off by the power-off. Status
/// 1 is the guest's debug-exit value 0, (0 << 1) | 1: every check passed.
const STOPPING: StoppingLines = StoppingLines {
    success: "vmm-run: matryoshka-vmm exited with status 1",
    failure: "vmm-run: matryoshka-vmm exited with status",
};

/// The L1 test kernel's checks that need nothing but a PC (not `smp`).
const L1_TEST_CHECKS: [&str; 7] = ["cpuid", "msr", "exceptions", "io", "pit", "rtc", "memory"];

/// The L1 test hypervisor's bring-up, which always runs before its checks.
const L1_HYPERVISOR_BRING_UP: [&str; 3] = ["vmx-enable", "vmcs-load", "vmcs-setup"];

/// The checks of its `checks=all` that pass under KVM's nested VMX, in
/// order: all but `preemption-timer`, where KVM (Linux 6.1) lets L2 run
/// one instruction before the exit of a timer started at zero, and the SDM
/// (26.7.4) has the exit before any.
fn l1_hypervisor_checks_passing_under_kvm() -> Vec<&'static str> {
    let checks = Check::ALL.into_iter().filter(|check| *check != Check::PreemptionTimer).map(Check::name);
    L1_HYPERVISOR_BRING_UP.into_iter().chain(checks).collect()
}
/// KVM's deviation, as the hypervisor reports it (then `done: 14 passed, 1 failed`).
const KVM_PREEMPTION_TIMER_DEVIATION: &str =
    "l1-hypervisor: preemption-timer: FAIL RIP after a zero timer: expected 0x";

fn expect(machine: &mut Machine, needle: &str) -> String {
    machine.expect(needle).unwrap_or_else(|report| panic!("{report}"))
}

/// The value of `name=N` in a line of words.
fn counter(line: &str, name: &str) -> Option<u64> {
    line.split_whitespace().find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// Checks the VMM's closing lines, its `ending` and exit `status`, and
/// returns its tick count and exit statistics lines.
fn expect_vmm_end(machine: &mut Machine, ending: &str, status: u32) -> String {
    let ticks = expect(machine, "matryoshka-vmm: ran ");
    let stats = expect(machine, "matryoshka-vmm: stats end: ");
    let exits = counter(&stats, "exits").unwrap_or_else(|| panic!("no exits= in '{stats}'"));
    let io_exits = counter(&stats, "io_exits").unwrap_or(0);
    // The guest's console alone is dozens of port writes, each one an exit.
    assert!(io_exits >= 50 && exits >= io_exits, "implausible exit counts: {stats}");
    expect(machine, &format!("matryoshka-vmm: {ending}: exit status {status}"));
    expect(machine, &format!("vmm-run: matryoshka-vmm exited with status {status}"));
    format!("{ticks}\n{stats}")
}

#[test]
fn linux_kvm_as_l0_runs_the_l1_hypervisor_linux_and_the_l1_test_kernel_under_matryoshka_vmm() {
    let started = Instant::now();
    let (bzimage, initramfs) = workspace::vmm_linux_images().unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::Builder::new().prefix("matryoshka-kvm-l0-").tempdir().expect("temporary directory");
    // vmm-run takes the guest's command line after `--`: no quotes, which
    // the kernel command line cannot escape.
    let run = "vmm-run --kernel /guests/l1-hypervisor --mem 32 --nested -- checks=all; \
               vmm-run --kernel /guests/linux-bzimage --initrd /guests/linux-initramfs --mem 96 -- \
                   console=ttyS0 tsc_early_khz=50000 panic=-1 matryoshka.run=uname; \
               vmm-run --kernel /guests/l1-test --mem 32 -- tests=all expect-vmx=0 expect-hypervisor=1 bench=200";
    // Without preemption_timer=0, KVM's use of the VMX preemption timer
    // (its "hv timer" for the guest's local APIC timer) hangs this Linux on
    // Bochs 2.7 at a fixed point a few seconds into the first guest (every
    // timer stops, the console too); with KVM's software timers both guests
    // run through.
    let image = ImageBuilder::bare_linux(bzimage, initramfs, STOPPING)
        .command_line(&format!(
            "console=ttyS0 tsc_early_khz=50000 panic=-1 kvm_intel.nested=1 kvm_intel.preemption_timer=0 \"matryoshka.run={run}\""
        ))
        .build(dir.path())
        .unwrap_or_else(|e| panic!("{e}"));
    let config = MachineConfig { timeout: Duration::from_secs(300), ..MachineConfig::new(Emulator::bochs()) };
    let mut machine = Machine::boot(&image, &config, dir.path()).unwrap_or_else(|e| panic!("{e}"));

    expect(&mut machine, "Linux version 6.1");
    expect(&mut machine, "matryoshka-guest: run begin");
    expect(&mut machine, "vmm-run: kvm_intel nested=Y");
    let first_start = machine.elapsed();

    // The L1 test hypervisor runs its L2 payload on KVM's nested VMX.
    expect(&mut machine, "matryoshka-vmm: 32 MiB, 1 vCPU, VMX shown, entry 0x");
    let checks = l1_hypervisor_checks_passing_under_kvm();
    for check in &checks {
        if *check == Check::Invept.name() {
            expect(&mut machine, KVM_PREEMPTION_TIMER_DEVIATION);
        }
        expect(&mut machine, &format!("l1-hypervisor: {check}: ok"));
    }
    expect(&mut machine, &format!("l1-hypervisor: done: {} passed, 1 failed", checks.len()));
    let l1_hypervisor_end = expect_vmm_end(&mut machine, "the guest wrote 0x1 to port 0xf4", 3);
    let second_start = machine.elapsed();

    // Linux under the VMM finds the e820 map and the MP table, routes its
    // interrupts through the IOAPIC, runs its command and halts (no ACPI,
    // so `poweroff -f` halts), which ends the VMM.
    expect(&mut machine, "matryoshka-vmm: 96 MiB, 1 vCPU, VMX hidden, entry 0x100000");
    expect(&mut machine, "BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved");
    expect(&mut machine, "BIOS-e820: [mem 0x0000000000100000-0x0000000005ffffff] usable");
    expect(&mut machine, "found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]");
    expect(&mut machine, "MPTABLE: OEM ID: MATRYOSH");
    expect(&mut machine, "IOAPIC[0]: apic_id 1, version 17, address 0xfec00000, GSI 0-23");
    expect(&mut machine, "APIC: Switch to symmetric I/O mode setup");
    expect(&mut machine, "matryoshka-guest: run begin");
    expect(&mut machine, "Linux");
    expect(&mut machine, "matryoshka-guest: run end (status 0)");
    expect(&mut machine, "reboot: System halted");
    let linux_end = expect_vmm_end(&mut machine, "the guest halted with interrupts off", 0);
    let third_start = machine.elapsed();

    // The L1 test kernel under KVM: every platform check passes.
    expect(&mut machine, "matryoshka-vmm: 32 MiB, 1 vCPU, VMX hidden, entry 0x");
    expect(&mut machine, "l1-test: booted by a multiboot loader (EAX 0x2badb002)");
    for check in L1_TEST_CHECKS {
        expect(&mut machine, &format!("l1-test: {check}: PASS"));
    }
    let cpuid = expect(&mut machine, "l1-test: bench: cpuid round trip:");
    let io = expect(&mut machine, "l1-test: bench: port 0x230 read round trip:");
    expect(&mut machine, &format!("l1-test: done: {} passed, 0 failed", L1_TEST_CHECKS.len()));
    let l1_test_end = expect_vmm_end(&mut machine, "the guest wrote 0x0 to port 0xf4", 1);
    let end = machine.elapsed();
    machine.expect_exit(Exit::Success).unwrap_or_else(|report| panic!("{report}"));

    let console = machine.console();
    let failures: Vec<&str> = console.lines().filter(|line| line.contains("FAIL")).collect();
    assert_eq!(failures.len(), 2, "only KVM's preemption-timer deviation: {failures:#?}");
    assert!(failures[0].starts_with(KVM_PREEMPTION_TIMER_DEVIATION), "{failures:#?}");
    assert_eq!(failures[1], "l1-hypervisor: preemption-timer: FAILED");
    // Reported, not asserted: the reference numbers.
    println!("{cpuid}\n{io}\nl1-test: {l1_test_end}\nl1-hypervisor: {l1_hypervisor_end}\nlinux: {linux_end}");
    println!(
        "wall time: Bochs start to the first VMM {:.1} s, l1-hypervisor {:.1} s, linux {:.1} s, l1-test {:.1} s; test {:.1} s in all",
        first_start.as_secs_f64(),
        (second_start - first_start).as_secs_f64(),
        (third_start - second_start).as_secs_f64(),
        (end - third_start).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
