//! The guests: created from the boot configuration, run side by side, and
//! each ended on its own, for its own reason, without touching the others.
//!
//! Each guest has its own RAM and EPT, its own VPID and VMCS, and its own
//! monitor, running deprivileged in its own address space (`monitor`).
//! Every VM exit goes to that monitor as an `ExitEvent`; its answer is
//! checked and applied by `monitor_channel`. A monitor that faults, stops
//! answering or asks for what it may not have ends its own guest only.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use console_ring::ConsoleBuffer;
use l0_shim::boot_info::BootInfo;
use l0_shim::text::printable;
use log::{info, warn};
use matryoshka_config::{GuestConfig, LifecycleAction};
use monitor_abi::boot_info::{flags, TestHook};
use monitor_abi::{Event, StopReason, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN};
use vmx::capabilities::VmxCapabilities;
use vmx::controls::SecondaryControls;
use vmx::vmcs::{Control64, GuestNatural};

use crate::arch::cpu::rdtsc;
use crate::arch::vmx_instructions::GuestRegisters;
use crate::kernel::control_plane::ControlPlane;
use crate::kernel::guest_images::Uploads;
use crate::kernel::guest_ram::GuestRam;
use crate::kernel::monitor::{MachineFacts, Monitor};
use crate::kernel::monitor_channel::{self, Next, Output};
use crate::kernel::vcpu::{FlatProtectedStart, Vcpu};
use crate::kernel::{tsc, vmcs};

/// How long a vCPU may run before the next one gets the CPU, in TSC ticks
/// (about 10 ms of Bochs time at 50 M instructions per second), however
/// many exits it takes in between: a vCPU that exits often must not get
/// less of the CPU than one that spins.
const TIME_SLICE_TICKS: u64 = 500_000;
/// The RTC time guests start with (2026-01-01T00:00:00Z): fixed, so runs
/// are repeatable.
const GUEST_WALL_CLOCK: u64 = 1_767_225_600;
/// Longest console line mirrored at once; longer ones are split.
const MAX_CONSOLE_LINE: usize = 512;
/// Console bytes each guest keeps for the control API.
const CONSOLE_BYTES_KEPT: usize = 64 * 1024;
/// Basic exit reasons counted one by one (SDM appendix C defines 0-79).
const EXIT_REASONS: usize = 80;

/// Where a guest is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestState {
    /// Its vCPUs run or wait (see [`VcpuState`]).
    Running,
    /// Stopped over the control API until it is resumed: none of its
    /// vCPUs runs, its time (TSC) goes on.
    Paused,
    /// Ended: the summary state word and why.
    Ended { state: &'static str, reason: String },
    /// Ended, and to be started again from its configuration (its
    /// `on_reboot`, `on_poweroff` or `on_crash` says `restart`).
    Restarting {
        reason: String,
        /// Asked for over the control API: not counted as a restart loop.
        requested: bool,
    },
}

/// Where one vCPU of a running guest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcpuState {
    Runnable,
    /// Halted (or, for an AP, waiting for a SIPI) until its monitor kicks
    /// it; woken at this host TSC at the latest.
    Halted {
        wake_at_tsc: Option<u64>,
    },
}

struct GuestVcpu {
    vcpu: Vcpu,
    state: VcpuState,
    /// The monitor has news for it (`Action::Kick`): it gets an event
    /// before it next runs.
    kicked: bool,
}

pub struct Guest {
    pub name: String,
    config: GuestConfig,
    vpid: u16,
    test_hook: TestHook,
    /// TSC of this guest's recent restarts, to catch a reboot loop.
    restarts: Vec<u64>,
    ram: GuestRam,
    vcpus: Vec<GuestVcpu>,
    monitor: Monitor,
    pub state: GuestState,
    /// The host TSC at which the monitor's platform next needs the guest to
    /// exit (its next timer event), if any.
    deadline_tsc: Option<u64>,
    console_line: Vec<u8>,
    /// What the guest wrote to its console, for the control API.
    pub console: ConsoleBuffer,
    /// VM exits by basic exit reason, of L1 and of L2.
    exit_counts: Vec<u64>,
    l2_exit_counts: Vec<u64>,
    created_at_tsc: u64,
    /// The last answer kicked another vCPU: the running one yields.
    kicked_another: bool,
    pub exits: u64,
    /// Its kernel and ramdisk, when they were uploaded (kept for restarts).
    uploads: Uploads,
    /// The host pressed its power button and it has not ended since.
    pub shutdown_requested: bool,
}

impl Guest {
    /// Creates a guest: its RAM, vCPU and monitor, which loads the kernel
    /// (uploaded, or the boot module its configuration names) and sets the
    /// vCPU's start state. The error says what was wrong.
    pub fn create(
        config: &GuestConfig,
        boot: &BootInfo,
        uploads: &Uploads,
        capabilities: &VmxCapabilities,
        vpid: u16,
        test_hook: TestHook,
    ) -> Result<Self, String> {
        let ram_bytes = config.memory_mib << 20;
        let ram = GuestRam::new(ram_bytes).map_err(|error| error.to_string())?;
        // Flat 32-bit protected mode, as both boot protocols start; the
        // monitor's loader sets the entry point, registers and GDT.
        let start = FlatProtectedStart {
            rip: 0,
            registers: GuestRegisters::default(),
            code_selector: 0,
            data_selector: 0,
            gdtr: None,
        };
        // One VPID per guest: its vCPUs share one address space, and a
        // shared tag lets TLB entries of one serve the others.
        let mut vcpus = Vec::new();
        for index in 0..config.vcpus.max(1) {
            let mut vcpu = Vcpu::new(capabilities, ram.eptp(), ram.host_range(), vpid, &start)
                .map_err(|error| error.to_string())?;
            vcpu.nested_allowed = config.nested_hvm;
            // The APs wait for INIT and SIPI, which their monitor sends.
            let state = if index == 0 { VcpuState::Runnable } else { VcpuState::Halted { wake_at_tsc: None } };
            vcpus.push(GuestVcpu { vcpu, state, kicked: false });
        }
        vcpus[0].vcpu.make_current().map_err(|error| error.to_string())?;
        let facts = MachineFacts {
            tsc_khz: u32::try_from(tsc::khz()).unwrap_or(u32::MAX),
            flags: native_flags(capabilities),
            wall_clock_unix_secs: GUEST_WALL_CLOCK,
        };
        let monitor = Monitor::create(config, &ram, boot, uploads, &facts, test_hook)?;
        let mut guest = Self {
            name: config.name.clone(),
            config: config.clone(),
            vpid,
            test_hook,
            restarts: Vec::new(),
            ram,
            vcpus,
            monitor,
            state: GuestState::Running,
            deadline_tsc: None,
            console_line: Vec::new(),
            console: ConsoleBuffer::new(CONSOLE_BYTES_KEPT),
            exit_counts: alloc::vec![0; EXIT_REASONS],
            l2_exit_counts: alloc::vec![0; EXIT_REASONS],
            created_at_tsc: rdtsc(),
            kicked_another: false,
            exits: 0,
            uploads: uploads.clone(),
            shutdown_requested: false,
        };
        let now_ns = guest.guest_now_ns();
        let response = guest
            .monitor
            .exchange(&Event::Start { vcpu: 0, ram_bytes, now_ns })
            .map_err(|failure| failure.to_string())?;
        guest.apply(0, response);
        if let GuestState::Ended { reason, .. } = &guest.state {
            return Err(reason.clone());
        }
        info!(
            "guest {}: created ({} MiB, {} vCPU{}, kernel {}, entry {:#x}, monitor {} KiB)",
            config.name,
            config.memory_mib,
            guest.vcpus.len(),
            if guest.vcpus.len() == 1 { "" } else { "s" },
            config.kernel,
            vmcs::read(GuestNatural::Rip),
            guest.monitor.memory_bytes() >> 10
        );
        Ok(guest)
    }

    fn end(&mut self, state: &'static str, reason: String) {
        self.shutdown_requested = false;
        self.flush_console();
        warn_or_info(state, &self.name, &reason);
        self.state = GuestState::Ended { state, reason };
    }

    /// The guest's TSC rate converts the monitor's nanoseconds to ticks.
    fn guest_now_ns(&self) -> u64 {
        let offset = vmcs::read(Control64::TscOffset);
        ns_from_ticks(rdtsc().wrapping_add(offset))
    }

    /// Gives vCPU `index` one time slice: it runs, exit after exit, until
    /// the slice is over, it halts, its guest ends, or it kicked another
    /// vCPU (which then gets the CPU soon: an IPI's sender often waits for
    /// the answer).
    fn run_turn(&mut self, index: usize) {
        let turn_end = rdtsc().saturating_add(TIME_SLICE_TICKS);
        loop {
            self.kicked_another = false;
            self.run_vcpu(index, turn_end);
            let runnable = self.state == GuestState::Running && self.vcpus[index].state == VcpuState::Runnable;
            if !runnable || self.kicked_another || rdtsc() >= turn_end {
                break;
            }
        }
    }

    /// Runs vCPU `index` until its next exit (handled), at most until
    /// `turn_end`. A kicked vCPU exits at once, so that the monitor sees
    /// its state and can deliver what it has for it.
    fn run_vcpu(&mut self, index: usize, turn_end: u64) {
        // It also exits at the monitor's next timer event, if sooner.
        let until = self.deadline_tsc.map_or(turn_end, |deadline| deadline.min(turn_end));
        let slice = if self.vcpus[index].kicked { 0 } else { until.saturating_sub(rdtsc()).max(1) };
        self.vcpus[index].kicked = false;
        let vcpu = &mut self.vcpus[index].vcpu;
        if let Err(error) = vcpu.run(slice) {
            self.end("failed", format!("vCPU {index}: VM entry: {error}"));
            return;
        }
        self.exits += 1;
        let exit = monitor_channel::snapshot_exit(index as u32, vcpu);
        let counts = if vcpu.in_l2() { &mut self.l2_exit_counts } else { &mut self.exit_counts };
        if let Some(count) = counts.get_mut(usize::from(exit.exit_reason as u16)) {
            *count += 1;
        }
        let event = Event::Exit(exit);
        self.ask_monitor(index, &event);
    }

    /// Sends an event about vCPU `index` (whose VMCS is current) to the
    /// monitor and applies its answer; a monitor that fails ends its guest.
    fn ask_monitor(&mut self, index: usize, event: &Event) {
        match self.monitor.exchange(event) {
            Ok(response) => self.apply(index, response),
            Err(failure) => self.end("failed", failure.to_string()),
        }
    }

    /// A halted vCPU's deadline passed, or its monitor kicked it.
    fn wake_vcpu(&mut self, index: usize) {
        if let Err(error) = self.vcpus[index].vcpu.make_current() {
            self.end("failed", format!("vCPU {index}: {error}"));
            return;
        }
        self.vcpus[index].state = VcpuState::Runnable;
        self.vcpus[index].kicked = false;
        let event = Event::Timer { vcpu: index as u32, now_ns: self.guest_now_ns() };
        self.ask_monitor(index, &event);
    }

    /// Whether nothing can wake the guest again: every vCPU waits with no
    /// deadline and no kick (no device of its platform has a deadline and
    /// the shim delivers no other interrupts).
    fn halted_for_good(&self) -> bool {
        self.vcpus.iter().all(|slot| slot.state == VcpuState::Halted { wake_at_tsc: None } && !slot.kicked)
    }

    /// Applies the monitor's answer about vCPU `index`, whose VMCS is
    /// current.
    fn apply(&mut self, index: usize, response: monitor_abi::Response) {
        let mut output = Output::default();
        let next = monitor_channel::apply(response, &mut self.vcpus[index].vcpu, &mut output);
        if let Some(xcr0) = output.xcr0 {
            self.vcpus[index].vcpu.xstate.xcr0 = xcr0;
        }
        if let Some(deadline_ns) = output.timer_ns {
            let offset = vmcs::read(Control64::TscOffset);
            self.deadline_tsc = deadline_ns.map(|ns| ticks_from_ns(ns).wrapping_sub(offset));
        }
        self.mirror_console(&output.console);
        for (level, text) in output.logs {
            let text = printable(&text);
            match level {
                LOG_ERROR | LOG_WARN => warn!("guest {}: {text}", self.name),
                LOG_INFO => info!("guest {}: {text}", self.name),
                LOG_DEBUG => log::debug!("guest {}: {text}", self.name),
                _ => log::trace!("guest {}: {text}", self.name),
            }
        }
        for kicked in output.kicks {
            match self.vcpus.get_mut(kicked as usize) {
                Some(slot) if kicked as usize != index => {
                    slot.kicked = true;
                    self.kicked_another = true;
                }
                Some(_) => {}
                None => {
                    let count = self.vcpus.len();
                    let why = format!("the shim refused the monitor's kick of vCPU {kicked}: the guest has {count}");
                    self.end("failed", why);
                    return;
                }
            }
        }
        match next {
            Next::Run => self.vcpus[index].state = VcpuState::Runnable,
            Next::Halt { wake_at_ns } => {
                let offset = vmcs::read(Control64::TscOffset);
                let wake_at_tsc = wake_at_ns.map(|ns| ticks_from_ns(ns).wrapping_sub(offset));
                self.vcpus[index].state = VcpuState::Halted { wake_at_tsc };
            }
            Next::Stop { reason, detail } => {
                let action = match reason {
                    StopReason::PowerOff => self.config.on_poweroff,
                    StopReason::Reboot => self.config.on_reboot,
                    StopReason::TripleFault | StopReason::GuestError => self.config.on_crash,
                    // A test's verdict, or a monitor that failed: never again.
                    StopReason::DebugExit { .. } | StopReason::MonitorError => LifecycleAction::Destroy,
                };
                let (state, reason) = describe_stop(reason, detail);
                if action == LifecycleAction::Restart {
                    self.flush_console();
                    info!("guest {}: {state} ({reason}); restarting, as configured", self.name);
                    self.state = GuestState::Restarting { reason, requested: false };
                } else {
                    self.end(state, reason);
                }
            }
        }
    }

    /// Mirrors the guest's console to the shim's, a line at a time with
    /// the guest's name in front.
    fn mirror_console(&mut self, bytes: &[u8]) {
        self.console.extend(bytes);
        for &byte in bytes {
            match byte {
                b'\n' => self.flush_console(),
                b'\r' => {}
                _ => {
                    self.console_line.push(byte);
                    // A guest that never ends its line must not fill the
                    // shim's heap.
                    if self.console_line.len() >= MAX_CONSOLE_LINE {
                        self.flush_console();
                    }
                }
            }
        }
    }

    fn flush_console(&mut self) {
        if !self.console_line.is_empty() {
            let line = String::from_utf8_lossy(&self.console_line);
            let line = printable(&line);
            crate::println!("[{}] {line}", self.name);
            self.console_line.clear();
        }
    }

    pub fn ram_mib(&self) -> u64 {
        self.ram.host_range().len() >> 20
    }

    pub fn config(&self) -> &GuestConfig {
        &self.config
    }

    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    pub fn uptime_ms(&self) -> u64 {
        rdtsc().saturating_sub(self.created_at_tsc) / tsc::khz().max(1)
    }

    pub fn monitor_memory_bytes(&self) -> u64 {
        self.monitor.memory_bytes()
    }

    /// (basic exit reason, exits of L1, exits of L2) for every reason
    /// seen.
    pub fn exit_counts(&self) -> impl Iterator<Item = (u16, u64, u64)> + '_ {
        self.exit_counts
            .iter()
            .zip(&self.l2_exit_counts)
            .enumerate()
            .filter(|(_, (l1, l2))| **l1 + **l2 > 0)
            .map(|(reason, (l1, l2))| (reason as u16, *l1, *l2))
    }

    /// Shadow-EPT table pages of all vCPUs.
    pub fn ept02_pages(&self) -> u64 {
        self.vcpus.iter().map(|slot| slot.vcpu.ept02_pages() as u64).sum()
    }

    /// Ends the guest from outside (the control API's destroy).
    pub fn destroy(&mut self, why: &str) {
        self.end("stopped", why.into());
    }

    /// Presses the guest's ACPI power button (the control API's shutdown):
    /// its monitor raises the SCI, and a guest that listens powers off on
    /// its own. vCPU 0 takes the event: the SCI is routed to the BSP.
    pub fn press_power_button(&mut self) {
        if let Err(error) = self.vcpus[0].vcpu.make_current() {
            self.end("failed", format!("vCPU 0: {error}"));
            return;
        }
        self.shutdown_requested = true;
        let event = Event::PowerButton { vcpu: 0, now_ns: self.guest_now_ns() };
        self.ask_monitor(0, &event);
    }

    /// Not ended: it runs, is paused, or restarts.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, GuestState::Ended { .. })
    }

    pub fn vpid(&self) -> u16 {
        self.vpid
    }

    pub fn uploads(&self) -> &Uploads {
        &self.uploads
    }
}

/// What VMX lets this guest use, for its CPUID.
fn native_flags(capabilities: &VmxCapabilities) -> u32 {
    let mut native = 0;
    if capabilities.ept_vpid.pages_1g() {
        native |= flags::EPT_1GB_PAGES;
    }
    if capabilities.secondary.supports(SecondaryControls::RDTSCP.bits()) {
        native |= flags::RDTSCP;
    }
    if capabilities.secondary.supports(SecondaryControls::INVPCID.bits()) {
        native |= flags::INVPCID;
    }
    native
}

fn warn_or_info(state: &str, name: &str, reason: &str) {
    if state == "stopped" {
        info!("guest {name}: {state} ({reason})");
    } else {
        warn!("guest {name}: {state} ({reason})");
    }
}

fn describe_stop(reason: StopReason, detail: String) -> (&'static str, String) {
    let detail = printable(&detail).into_owned();
    let with_detail = |what: &str| if detail.is_empty() { what.to_string() } else { format!("{what}: {detail}") };
    match reason {
        StopReason::DebugExit { status } => ("stopped", format!("debug exit, status {status}")),
        StopReason::PowerOff => ("stopped", with_detail("powered off")),
        StopReason::Reboot => ("stopped", with_detail("reboot")),
        StopReason::TripleFault if detail.is_empty() => ("crashed", "triple fault".into()),
        StopReason::TripleFault => ("crashed", detail),
        StopReason::GuestError => ("crashed", detail),
        StopReason::MonitorError => ("failed", with_detail("monitor error")),
    }
}

fn ns_from_ticks(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(tsc::khz().max(1))) as u64
}

fn ticks_from_ns(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(tsc::khz()) / 1_000_000) as u64
}

/// Runs every guest until all have ended, then returns each one's summary
/// line, in configuration order. Every runnable vCPU of every guest gets a
/// turn in each round; a halted one waits for its deadline or a kick from
/// its monitor. When no vCPU can run, the CPU waits (spins on the TSC: the
/// shim takes no interrupts yet) for the earliest deadline. A guest whose
/// configuration says `restart` for how it ended is created again in its
/// place. The control plane, if any, is polled after every round and while
/// the CPU waits: its requests pause, resume, reset or destroy guests.
pub fn run_all(
    guests: &mut Vec<Guest>,
    boot: &BootInfo,
    capabilities: &'static VmxCapabilities,
    mut control: Option<&mut ControlPlane>,
) -> Vec<String> {
    // Guests whose restart failed, by VPID, with the reason (the control
    // API may add and remove guests, so places in `guests` change).
    let mut gone: Vec<(u16, String)> = Vec::new();
    // The vCPU (guest's VPID, index) whose directly-accessed MSRs the CPU holds.
    let mut msr_owner: Option<(u16, usize)> = None;
    loop {
        let mut live = false;
        let mut busy = false;
        let mut earliest_wake: Option<u64> = None;
        for index in 0..guests.len() {
            match guests[index].state.clone() {
                GuestState::Ended { .. } => continue,
                // Nothing runs, but the control API may resume it.
                GuestState::Paused => live = true,
                GuestState::Restarting { reason, requested } => {
                    if msr_owner.is_some_and(|(owner, _)| owner == guests[index].vpid) {
                        // Its MSRs die with it; nobody else's are lost.
                        msr_owner = None;
                    }
                    match restart(&mut guests[index], reason, requested, boot, capabilities) {
                        Ok(()) => live = true,
                        Err(summary) => gone.push((guests[index].vpid, summary)),
                    }
                }
                GuestState::Running => {
                    live = true;
                    for vcpu in 0..guests[index].vcpus.len() {
                        if guests[index].state != GuestState::Running {
                            break;
                        }
                        let slot = &guests[index].vcpus[vcpu];
                        match (slot.state, slot.kicked) {
                            (VcpuState::Runnable, _) => {
                                busy = true;
                                switch_msrs(guests, &mut msr_owner, (index, vcpu));
                                guests[index].run_turn(vcpu);
                            }
                            (VcpuState::Halted { .. }, true) => {
                                busy = true;
                                guests[index].wake_vcpu(vcpu);
                            }
                            (VcpuState::Halted { wake_at_tsc: Some(wake) }, false) if rdtsc() >= wake => {
                                busy = true;
                                guests[index].wake_vcpu(vcpu);
                            }
                            (VcpuState::Halted { wake_at_tsc: Some(wake) }, false) => {
                                earliest_wake = Some(earliest_wake.map_or(wake, |earliest| earliest.min(wake)));
                            }
                            (VcpuState::Halted { wake_at_tsc: None }, false) => {}
                        }
                    }
                    let guest = &mut guests[index];
                    if guest.state == GuestState::Running && guest.halted_for_good() {
                        guest.end("stopped", "halted for good: no interrupt can wake it".into());
                    }
                }
            }
        }
        if let Some(control) = control.as_deref_mut() {
            control.poll_guests(guests, boot, capabilities);
            forget_removed(guests, &mut msr_owner);
            // A guest started over the API keeps the loop going.
            live |= guests.iter().any(Guest::is_live);
        }
        if !live {
            break;
        }
        if busy {
            continue;
        }
        match (control.as_deref_mut(), earliest_wake) {
            (None, Some(wake)) => {
                while rdtsc() < wake {
                    core::hint::spin_loop();
                }
            }
            // Requests may change what can run: wait briefly, then look again.
            (Some(control), wake) => {
                let status = control.poll_guests(guests, boot, capabilities);
                forget_removed(guests, &mut msr_owner);
                if !status.more_work && wake.is_none_or(|wake| rdtsc() < wake) {
                    tsc::wait_us(IDLE_POLL_US);
                }
            }
            (None, None) => {}
        }
    }
    guests
        .iter()
        .map(|guest| {
            let l2_exits: u64 = guest.l2_exit_counts.iter().sum();
            info!(
                "guest {}: {} exits ({} of L2), {} MiB of RAM freed",
                guest.name,
                guest.exits,
                l2_exits,
                guest.ram_mib()
            );
            info!("guest {}: monitor switches: {}", guest.name, guest.monitor.switches);
            let gone = gone.iter().find(|(vpid, _)| *vpid == guest.vpid).map(|(_, line)| line.clone());
            gone.unwrap_or_else(|| summary(guest))
        })
        .collect()
}

/// How long the CPU waits between polls of the control plane when no vCPU
/// can run.
const IDLE_POLL_US: u32 = 100;

/// A guest that restarts this often within [`RESTART_WINDOW_MS`] is in a
/// restart loop and is stopped.
const MAX_RESTARTS: usize = 3;
const RESTART_WINDOW_MS: u64 = 60_000;

/// Replaces `guest` by a fresh one from its configuration. On failure the
/// guest stays ended and the error is its summary line.
fn restart(
    guest: &mut Guest,
    reason: String,
    requested: bool,
    boot: &BootInfo,
    capabilities: &VmxCapabilities,
) -> Result<(), String> {
    let window_start = rdtsc().saturating_sub(RESTART_WINDOW_MS.saturating_mul(tsc::khz()));
    let mut restarts: Vec<u64> = guest.restarts.iter().copied().filter(|&at| at >= window_start).collect();
    if !requested && restarts.len() >= MAX_RESTARTS {
        let why =
            format!("{} restarts within {} s, the last after: {reason}", restarts.len(), RESTART_WINDOW_MS / 1000);
        guest.end("failed", why);
        return Ok(());
    }
    // The new guest is built before the old one goes (a Guest owns its
    // memory for as long as it exists), so a restart needs the guest's
    // memory twice for a moment.
    let (config, vpid, test_hook) = (guest.config.clone(), guest.vpid, guest.test_hook);
    match Guest::create(&config, boot, &guest.uploads.clone(), capabilities, vpid, test_hook) {
        Ok(mut fresh) => {
            if !requested {
                restarts.push(rdtsc());
            }
            fresh.restarts = restarts;
            fresh.exits += guest.exits;
            // The console goes on: a reader's offsets stay valid.
            fresh.console = core::mem::replace(&mut guest.console, ConsoleBuffer::new(1));
            for (total, old) in fresh.exit_counts.iter_mut().zip(&guest.exit_counts) {
                *total += old;
            }
            for (total, old) in fresh.l2_exit_counts.iter_mut().zip(&guest.l2_exit_counts) {
                *total += old;
            }
            info!("guest {}: restarted ({reason})", fresh.name);
            *guest = fresh;
            Ok(())
        }
        Err(error) => {
            let line = format!("guest {}: failed (restart after {reason} failed: {error})", config.name);
            warn!("{line}");
            guest.state = GuestState::Ended { state: "failed", reason: format!("restart failed: {error}") };
            Err(line)
        }
    }
}

/// Gives the CPU's directly-accessed MSRs to vCPU `to` (guest, index),
/// keeping the values of the vCPU that had them.
fn switch_msrs(guests: &mut [Guest], owner: &mut Option<(u16, usize)>, to: (usize, usize)) {
    let to_key = (guests[to.0].vpid, to.1);
    if *owner == Some(to_key) {
        return;
    }
    if let Some((vpid, vcpu)) = *owner {
        if let Some(guest) = guests.iter_mut().find(|guest| guest.vpid == vpid) {
            guest.vcpus[vcpu].vcpu.save_switched_msrs();
        }
    }
    guests[to.0].vcpus[to.1].vcpu.load_switched_msrs();
    *owner = Some(to_key);
}

/// The control API removed the guest whose MSRs the CPU holds: they go
/// with it (a later guest with its VPID must not inherit them).
fn forget_removed(guests: &[Guest], owner: &mut Option<(u16, usize)>) {
    if owner.is_some_and(|(vpid, _)| !guests.iter().any(|guest| guest.vpid == vpid)) {
        *owner = None;
    }
}

/// The summary line of a guest.
pub fn summary(guest: &Guest) -> String {
    match &guest.state {
        GuestState::Ended { state, reason } => format!("guest {}: {state} ({reason})", guest.name),
        other => format!("guest {}: {other:?}", guest.name),
    }
}
