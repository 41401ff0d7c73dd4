//! The guest's PC platform: the ISA devices on one port bus, the 8259 PICs,
//! the IOAPIC and one local APIC per vCPU, wired together.
//!
//! The monitor hands every port I/O exit to [`LegacyPlatform::io_read`] or
//! [`LegacyPlatform::io_write`], which find the device that decodes the
//! port, and every access to the APIC pages (0xFEE00000 per vCPU,
//! 0xFEC00000 for the IOAPIC) to [`LegacyPlatform::mmio_read`] or
//! [`LegacyPlatform::mmio_write`]. After each, the devices' interrupt lines
//! are propagated the way a PC wires them: each ISA IRQ goes both to the
//! 8259 and to the IOAPIC pin of the same number, except the PIT's IRQ0,
//! which reaches the IOAPIC at pin 2 (the MADT's interrupt source
//! override). The IOAPIC's messages, and the IPIs the local APICs send,
//! are routed to the local APICs they are for.
//!
//! A vCPU gets an interrupt from its local APIC (the highest requested
//! vector above its processor priority) or, on the BSP, from the 8259
//! through LINT0 when that is an ExtINT entry (virtual-wire mode, the state
//! the BSP starts in) or the APIC is disabled. So a guest that never
//! touches its APIC (Linux with `nolapic noapic`) sees the 8259 alone, as
//! before, and one that programs the IOAPIC and masks LINT0 sees the APIC.
//!
//! Before injecting an event, the monitor calls [`LegacyPlatform::advance`]
//! with the current guest time (timers that expired while the guest ran get
//! their say), then asks [`LegacyPlatform::pending_interrupt_vector`] and,
//! when it injects, [`LegacyPlatform::acknowledge_interrupt`]. While the
//! guest waits (HLT), [`LegacyPlatform::next_event_ns`] says when to come
//! back.
//!
//! A port no device decodes reads as all ones, as an empty ISA bus does,
//! and writes to it go nowhere; both are counted, with the last such port.
//! (Linux writes to port 0x80 as an I/O delay; those show up here.)

use alloc::vec::Vec;

use super::acpi_pm::AcpiPm;
use super::debug_exit::DebugExit;
use super::io_apic::{IoApic, IOAPIC_BASE, IOAPIC_WINDOW_SIZE, TIMER_GSI};
use super::local_apic::{
    ApicEffect, ApicMode, DeliveryMode, InterruptMessage, LocalApic, X2apicFault, XAPIC_BASE, XAPIC_PAGE_SIZE,
};
use super::pic8259::Pic8259Pair;
use super::pit8254::{Pit8254, PIT_IRQ};
use super::rtc_cmos::{RtcCmos, RTC_IRQ};
use super::system_reset::SystemReset;
use super::uart16550::{Uart16550, COM1_BASE, COM1_IRQ};
use super::ConsoleBuffer;
use super::{all_ones, DeviceMetrics, PortDevice};
use crate::loader::acpi::SCI_IRQ;

/// The APIC timer's input clock unless configured: 1 GHz, as the CPUID
/// policy reports it in leaf 0x15.
pub const DEFAULT_APIC_TIMER_KHZ: u64 = crate::policy::cpuid::DEFAULT_APIC_TIMER_KHZ as u64;

/// What the platform is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformConfig {
    /// Guest RAM from address 0, for the CMOS memory-size bytes.
    pub ram_bytes: u64,
    /// The RTC's time at guest time 0, in seconds since the Unix epoch.
    pub wall_clock_unix_secs: u64,
    /// How many of the newest console bytes are kept.
    pub console_capacity: usize,
    /// How many bytes of console input may wait for the guest.
    pub console_input_capacity: usize,
    /// vCPUs, each with a local APIC whose ID is its index.
    pub vcpus: u32,
    /// The guest's TSC rate, for TSC-deadline timers.
    pub tsc_khz: u64,
    /// The local APIC timers' input clock.
    pub apic_timer_khz: u64,
}

impl PlatformConfig {
    /// One vCPU, a 64 KiB console ring and a 4 KiB input queue, a 1 GHz TSC.
    pub fn new(ram_bytes: u64, wall_clock_unix_secs: u64) -> Self {
        Self {
            ram_bytes,
            wall_clock_unix_secs,
            console_capacity: 64 * 1024,
            console_input_capacity: 4096,
            vcpus: 1,
            tsc_khz: 1_000_000,
            apic_timer_khz: DEFAULT_APIC_TIMER_KHZ,
        }
    }
}

/// The devices of one guest and their wiring.
#[derive(Debug, Clone)]
pub struct LegacyPlatform {
    pic: Pic8259Pair,
    pit: Pit8254,
    rtc: RtcCmos,
    com1: Uart16550,
    debug_exit: DebugExit,
    acpi_pm: AcpiPm,
    system_reset: SystemReset,
    ioapic: IoApic,
    apics: Vec<LocalApic>,
    /// Messages on their way from the IOAPIC and the APICs, reused.
    messages: Vec<InterruptMessage>,
    /// All port accesses, and the unclaimed ones.
    metrics: DeviceMetrics,
}

impl LegacyPlatform {
    pub fn new(config: &PlatformConfig) -> Self {
        let apics = (0..config.vcpus.max(1))
            .map(|index| LocalApic::new(index, index == 0, config.tsc_khz, config.apic_timer_khz))
            .collect();
        Self {
            pic: Pic8259Pair::new(),
            pit: Pit8254::new(),
            rtc: RtcCmos::new(config.wall_clock_unix_secs, config.ram_bytes),
            com1: Uart16550::new(COM1_BASE, config.console_capacity, config.console_input_capacity),
            debug_exit: DebugExit::new(),
            acpi_pm: AcpiPm::new(),
            system_reset: SystemReset::new(),
            ioapic: IoApic::with_id(crate::loader::acpi::IOAPIC_ID),
            apics,
            messages: Vec::new(),
            metrics: DeviceMetrics::default(),
        }
    }

    /// A guest `in` of `size` bytes from `port` at guest time `now_ns`.
    pub fn io_read(&mut self, port: u16, size: u8, now_ns: u64) -> u32 {
        self.metrics.reads += 1;
        let value = match self.device_for(port) {
            Some(device) => device.read(port, size, now_ns),
            None => {
                self.metrics.unclaimed_reads += 1;
                self.metrics.last_odd_port = Some(port);
                all_ones(size)
            }
        };
        self.propagate_lines(now_ns);
        value
    }

    /// A guest `out` of `size` bytes of `value` to `port` at guest time
    /// `now_ns`.
    pub fn io_write(&mut self, port: u16, size: u8, value: u32, now_ns: u64) {
        self.metrics.writes += 1;
        match self.device_for(port) {
            Some(device) => device.write(port, size, value, now_ns),
            None => {
                self.metrics.unclaimed_writes += 1;
                self.metrics.last_odd_port = Some(port);
            }
        }
        self.propagate_lines(now_ns);
    }

    /// Whether a device answers at guest-physical `gpa` for `vcpu`: its
    /// xAPIC page (while in xAPIC mode) or the IOAPIC's window.
    pub fn decodes_mmio(&self, vcpu: usize, gpa: u64) -> bool {
        let xapic = self.apics.get(vcpu).is_some_and(|apic| apic.mode() == ApicMode::XApic);
        (xapic && (XAPIC_BASE..XAPIC_BASE + XAPIC_PAGE_SIZE).contains(&gpa))
            || (IOAPIC_BASE..IOAPIC_BASE + IOAPIC_WINDOW_SIZE).contains(&gpa)
    }

    /// A guest read of `size` bytes at `gpa` by `vcpu`; `None` if no device
    /// is there.
    pub fn mmio_read(&mut self, vcpu: usize, gpa: u64, size: u8, now_ns: u64) -> Option<u32> {
        if !self.decodes_mmio(vcpu, gpa) {
            return None;
        }
        self.advance(now_ns);
        if gpa >= XAPIC_BASE {
            Some(self.apics[vcpu].mmio_read(gpa - XAPIC_BASE, size, now_ns))
        } else {
            Some(self.ioapic.mmio_read(gpa - IOAPIC_BASE, size))
        }
    }

    /// A guest write at `gpa` by `vcpu`; `false` if no device is there.
    pub fn mmio_write(&mut self, vcpu: usize, gpa: u64, size: u8, value: u32, now_ns: u64) -> bool {
        if !self.decodes_mmio(vcpu, gpa) {
            return false;
        }
        self.advance(now_ns);
        if gpa >= XAPIC_BASE {
            let effect = self.apics[vcpu].mmio_write(gpa - XAPIC_BASE, size, value, now_ns);
            self.apply(effect);
        } else {
            let mut messages = core::mem::take(&mut self.messages);
            self.ioapic.mmio_write(gpa - IOAPIC_BASE, size, value, &mut messages);
            self.route_all(&mut messages);
            self.messages = messages;
        }
        true
    }

    /// RDMSR of an x2APIC register (0x800-0x8FF).
    pub fn apic_msr_read(&mut self, vcpu: usize, msr: u32, now_ns: u64) -> Result<u64, X2apicFault> {
        self.advance(now_ns);
        self.apics.get_mut(vcpu).ok_or(X2apicFault::NotX2apic)?.msr_read(msr, now_ns)
    }

    /// WRMSR of an x2APIC register.
    pub fn apic_msr_write(&mut self, vcpu: usize, msr: u32, value: u64, now_ns: u64) -> Result<(), X2apicFault> {
        self.advance(now_ns);
        let effect = self.apics.get_mut(vcpu).ok_or(X2apicFault::NotX2apic)?.msr_write(msr, value, now_ns)?;
        self.apply(effect);
        Ok(())
    }

    /// IA32_TSC_DEADLINE of `vcpu`.
    pub fn tsc_deadline(&self, vcpu: usize) -> u64 {
        self.apics.get(vcpu).map_or(0, LocalApic::read_tsc_deadline)
    }

    pub fn set_tsc_deadline(&mut self, vcpu: usize, value: u64, now_ns: u64) {
        if let Some(apic) = self.apics.get_mut(vcpu) {
            apic.write_tsc_deadline(value, now_ns);
        }
    }

    /// IA32_APIC_BASE of `vcpu` changed its enable bits (EN, EXTD).
    pub fn set_apic_mode(&mut self, vcpu: usize, mode: ApicMode) {
        if let Some(apic) = self.apics.get_mut(vcpu) {
            apic.set_mode(mode);
        }
    }

    /// Brings the timers up to `now_ns` and the interrupt controllers'
    /// inputs with them.
    pub fn advance(&mut self, now_ns: u64) {
        for apic in &mut self.apics {
            apic.advance(now_ns);
        }
        self.propagate_lines(now_ns);
    }

    /// When a timer next raises an interrupt, if any is armed: the time to
    /// wake a waiting guest at. Never earlier than `now_ns`.
    pub fn next_event_ns(&self, now_ns: u64) -> Option<u64> {
        let apics = self.apics.iter().filter_map(|apic| apic.next_deadline().map(|at| at.max(now_ns)));
        [self.pit.next_event_ns(now_ns), self.rtc.next_event_ns(now_ns)].into_iter().flatten().chain(apics).min()
    }

    /// The vector `vcpu` would take now, if any: its local APIC's, or on
    /// the BSP the 8259's through LINT0.
    pub fn pending_interrupt_vector(&self, vcpu: usize) -> Option<u8> {
        let apic = self.apics.get(vcpu)?;
        apic.pending_vector().or_else(|| self.pic_reaches(vcpu).then(|| self.pic.pending_vector()).flatten())
    }

    /// The interrupt acknowledge for an external interrupt injected into
    /// `vcpu`: the vector, now in service at the controller it came from.
    pub fn acknowledge_interrupt(&mut self, vcpu: usize) -> u8 {
        let Some(apic) = self.apics.get(vcpu) else { return 0xff };
        if apic.pending_vector().is_none() && self.pic_reaches(vcpu) {
            return self.pic.acknowledge();
        }
        self.apics[vcpu].acknowledge()
    }

    /// An NMI waiting for `vcpu` (LINT1 or an NMI message), taken.
    pub fn take_nmi(&mut self, vcpu: usize) -> bool {
        self.apics.get_mut(vcpu).is_some_and(LocalApic::take_nmi)
    }

    /// Whether the 8259's INTR reaches `vcpu`: only the BSP's LINT0 is
    /// wired to it.
    fn pic_reaches(&self, vcpu: usize) -> bool {
        vcpu == 0 && self.apics[0].accepts_pic_interrupts()
    }

    /// Queues host console input for COM1. Returns how many bytes fit.
    pub fn push_console_input(&mut self, bytes: &[u8], now_ns: u64) -> usize {
        let taken = self.com1.push_input(bytes);
        self.propagate_lines(now_ns);
        taken
    }

    /// What the guest wrote to COM1.
    pub fn console(&self) -> &ConsoleBuffer {
        self.com1.console()
    }

    /// The guest's status if it ended itself through the debug-exit port.
    pub fn exit_status(&self) -> Option<u32> {
        self.debug_exit.exit_status()
    }

    /// How the guest asked to be reset, once it has.
    pub fn reset_requested(&self) -> Option<&'static str> {
        self.system_reset.reset_requested()
    }

    /// Whether the guest entered ACPI S5 (powered off).
    pub fn powered_off(&self) -> bool {
        self.acpi_pm.powered_off()
    }

    /// The host presses the ACPI power button: the SCI (ISA IRQ 9, the
    /// FADT's SCI_INT) goes up if the guest enabled the button's event.
    pub fn press_power_button(&mut self, now_ns: u64) {
        self.acpi_pm.press_power_button();
        self.propagate_lines(now_ns);
    }

    pub fn acpi_pm(&self) -> &AcpiPm {
        &self.acpi_pm
    }

    /// Whether the guest disabled NMI (port 0x70 bit 7).
    pub fn nmi_disabled(&self) -> bool {
        self.rtc.nmi_disabled()
    }

    /// The bus's own counters: every access, and those no device claimed.
    pub fn metrics(&self) -> &DeviceMetrics {
        &self.metrics
    }

    /// Every device's counters by name, the bus's own first; the local
    /// APICs' summed.
    pub fn device_metrics(&self) -> [(&'static str, DeviceMetrics); 10] {
        let apics = self.apics.iter().map(LocalApic::metrics).fold(DeviceMetrics::default(), |sum, m| DeviceMetrics {
            reads: sum.reads + m.reads,
            writes: sum.writes + m.writes,
            bad_size: sum.bad_size + m.bad_size,
            wrong_direction: sum.wrong_direction + m.wrong_direction,
            invalid_commands: sum.invalid_commands + m.invalid_commands,
            unsupported: sum.unsupported + m.unsupported,
            overruns: sum.overruns + m.overruns,
            coalesced_ticks: sum.coalesced_ticks + m.coalesced_ticks,
            spurious_interrupts: sum.spurious_interrupts + m.spurious_interrupts,
            unclaimed_reads: 0,
            unclaimed_writes: 0,
            last_odd_port: m.last_odd_port.or(sum.last_odd_port),
        });
        [
            ("bus", self.metrics),
            ("pic", *self.pic.metrics()),
            ("pit", *self.pit.metrics()),
            ("rtc", *self.rtc.metrics()),
            ("com1", *self.com1.metrics()),
            ("debug-exit", *self.debug_exit.metrics()),
            ("acpi-pm", *self.acpi_pm.metrics()),
            ("system-reset", *self.system_reset.metrics()),
            ("ioapic", *self.ioapic.metrics()),
            ("lapic", apics),
        ]
    }

    pub fn pic(&self) -> &Pic8259Pair {
        &self.pic
    }

    pub fn pit(&self) -> &Pit8254 {
        &self.pit
    }

    pub fn rtc(&self) -> &RtcCmos {
        &self.rtc
    }

    pub fn com1(&self) -> &Uart16550 {
        &self.com1
    }

    pub fn debug_exit(&self) -> &DebugExit {
        &self.debug_exit
    }

    pub fn ioapic(&self) -> &IoApic {
        &self.ioapic
    }

    pub fn local_apic(&self, vcpu: usize) -> Option<&LocalApic> {
        self.apics.get(vcpu)
    }

    /// The local APIC of `vcpu`, for INIT/SIPI state the monitor consumes.
    pub fn local_apic_mut(&mut self, vcpu: usize) -> Option<&mut LocalApic> {
        self.apics.get_mut(vcpu)
    }

    fn device_for(&mut self, port: u16) -> Option<&mut dyn PortDevice> {
        let devices: [&mut dyn PortDevice; 7] = [
            &mut self.pic,
            &mut self.pit,
            &mut self.rtc,
            &mut self.com1,
            &mut self.debug_exit,
            &mut self.acpi_pm,
            &mut self.system_reset,
        ];
        devices.into_iter().find(|device| device.decodes(port))
    }

    /// Drives the PIC's and the IOAPIC's inputs from the devices' lines.
    fn propagate_lines(&mut self, now_ns: u64) {
        let mut messages = core::mem::take(&mut self.messages);
        // Channel 0's periodic edges may have come and gone between two
        // exits; each batch is one rising edge for the PIC and the IOAPIC.
        if self.pit.take_irq0_edges(now_ns) > 0 {
            self.pic.set_irq(PIT_IRQ, false);
            self.pic.set_irq(PIT_IRQ, true);
            self.ioapic.set_irq(usize::from(TIMER_GSI), false, &mut messages);
            self.ioapic.set_irq(usize::from(TIMER_GSI), true, &mut messages);
        }
        let irq0 = self.pit.irq0_level(now_ns);
        self.pic.set_irq(PIT_IRQ, irq0);
        self.ioapic.set_irq(usize::from(TIMER_GSI), irq0, &mut messages);
        let com1 = self.com1.irq_level();
        self.pic.set_irq(COM1_IRQ, com1);
        self.ioapic.set_irq(usize::from(COM1_IRQ), com1, &mut messages);
        self.rtc.advance(now_ns);
        let rtc = self.rtc.irq_level();
        self.pic.set_irq(RTC_IRQ, rtc);
        self.ioapic.set_irq(usize::from(RTC_IRQ), rtc, &mut messages);
        let sci = self.acpi_pm.sci_level();
        self.pic.set_irq(SCI_IRQ, sci);
        self.ioapic.set_irq(usize::from(SCI_IRQ), sci, &mut messages);
        self.route_all(&mut messages);
        self.messages = messages;
    }

    fn apply(&mut self, effect: ApicEffect) {
        let mut messages = core::mem::take(&mut self.messages);
        match effect {
            ApicEffect::None => {}
            ApicEffect::Ipi(message) => messages.push(message),
            ApicEffect::LevelEoi(vector) => self.ioapic.end_of_interrupt(vector, &mut messages),
        }
        self.route_all(&mut messages);
        self.messages = messages;
    }

    /// Delivers queued messages. Delivery itself sends nothing more, so
    /// one pass empties the queue.
    fn route_all(&mut self, messages: &mut Vec<InterruptMessage>) {
        for message in messages.drain(..) {
            route(&mut self.apics, &message, &mut self.metrics);
        }
    }
}

/// Delivers one message to the local APICs it is for (SDM 10.6.2).
fn route(apics: &mut [LocalApic], message: &InterruptMessage, metrics: &mut DeviceMetrics) {
    let targets = apics.iter().enumerate().filter(|(_, apic)| apic.matches(message.destination, message.source));
    if message.delivery == DeliveryMode::LowestPriority {
        // Arbitration goes to the lowest processor priority; ties to the
        // lowest index, as a fixed rotation would start there.
        let chosen = targets.min_by_key(|(_, apic)| apic.ppr()).map(|(index, _)| index);
        match chosen {
            Some(index) => apics[index].accept(message.vector, message.level_triggered),
            None => metrics.spurious_interrupts += 1,
        }
        return;
    }
    let targets: Vec<usize> = targets.map(|(index, _)| index).collect();
    if targets.is_empty() {
        metrics.spurious_interrupts += 1;
    }
    for index in targets {
        let apic = &mut apics[index];
        match message.delivery {
            DeliveryMode::Fixed => apic.accept(message.vector, message.level_triggered),
            DeliveryMode::Nmi => apic.deliver_nmi(),
            DeliveryMode::Init => apic.deliver_init(),
            DeliveryMode::StartUp => apic.deliver_sipi(message.vector),
            // SMI and ExtINT-through-the-IOAPIC are not modelled.
            _ => metrics.unsupported += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn platform() -> LegacyPlatform {
        LegacyPlatform::new(&PlatformConfig {
            ram_bytes: 256 << 20,
            wall_clock_unix_secs: 1_709_214_330,
            console_capacity: 256,
            console_input_capacity: 64,
            ..PlatformConfig::new(0, 0)
        })
    }

    fn outb(platform: &mut LegacyPlatform, port: u16, value: u8, now_ns: u64) {
        platform.io_write(port, 1, u32::from(value), now_ns);
    }

    fn inb(platform: &mut LegacyPlatform, port: u16, now_ns: u64) -> u8 {
        let value = platform.io_read(port, 1, now_ns);
        assert!(value <= 0xff);
        value as u8
    }

    /// Linux's 8259 init: vectors 0x30 and 0x38, cascade on IR2.
    fn init_pic(platform: &mut LegacyPlatform) {
        for (port, value) in [
            (0x21, 0xff),
            (0xa1, 0xff),
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xfb),
            (0xa1, 0xff),
        ] {
            outb(platform, port, value, 0);
        }
    }

    #[test]
    fn unclaimed_ports_read_as_all_ones_and_are_counted() {
        let mut platform = platform();
        assert_eq!(platform.io_read(0x80, 1, 0), 0xff);
        assert_eq!(platform.io_read(0x1f0, 2, 0), 0xffff);
        assert_eq!(platform.io_read(0xcf8, 4, 0), 0xffff_ffff);
        platform.io_write(0x80, 1, 0, 0);
        platform.io_write(0x2f8, 1, b'x'.into(), 0);
        let metrics = platform.metrics();
        assert_eq!((metrics.unclaimed_reads, metrics.unclaimed_writes), (3, 2));
        assert_eq!(metrics.last_odd_port, Some(0x2f8));
        assert_eq!((metrics.reads, metrics.writes), (3, 2));
        assert_eq!(platform.console().end_offset(), 0);
        // Claimed ports do not count as unclaimed.
        assert_eq!(inb(&mut platform, 0x3fd, 0), 0x60);
        assert_eq!(platform.metrics().unclaimed_reads, 3);
        assert_eq!(platform.metrics().reads, 4);
        let names = platform.device_metrics().map(|(name, _)| name);
        assert_eq!(
            names,
            ["bus", "pic", "pit", "rtc", "com1", "debug-exit", "acpi-pm", "system-reset", "ioapic", "lapic"]
        );
        assert_eq!(platform.device_metrics()[4].1.reads, 1);
    }

    #[test]
    fn every_device_is_reachable_at_its_ports() {
        let mut platform = platform();
        assert_eq!(inb(&mut platform, 0x21, 0), 0xff, "PIC mask after the BIOS");
        assert_eq!(inb(&mut platform, 0x4d0, 0), 0x00, "ELCR");
        outb(&mut platform, 0x70, 0x0d, 0);
        assert_eq!(inb(&mut platform, 0x71, 0), 0x80, "RTC register D");
        outb(&mut platform, 0x61, 0x03, 0);
        assert_eq!(inb(&mut platform, 0x61, 0) & 0x0f, 0x03, "port 0x61");
        outb(&mut platform, 0x3f8, b'A', 0);
        assert_eq!(platform.console().to_vec_from(0).1, b"A");
        assert_eq!(platform.exit_status(), None);
        platform.io_write(0xf4, 4, 1, 0);
        assert_eq!(platform.exit_status(), Some(3));
        outb(&mut platform, 0x70, 0x80, 0);
        assert!(platform.nmi_disabled());
        for (_, metrics) in platform.device_metrics() {
            assert_eq!(metrics.odd_total(), 0);
        }
    }

    /// Linux's boot with the PIT as its clock event: PIC init, mode 2 at
    /// 1000 Hz, IRQ0 unmasked, then timer interrupts as time passes,
    /// each acknowledged and ended.
    #[test]
    fn periodic_timer_interrupts_reach_the_cpu() {
        let mut platform = platform();
        init_pic(&mut platform);
        outb(&mut platform, 0x43, 0x34, 0);
        outb(&mut platform, 0x40, 0xa9, 0);
        outb(&mut platform, 0x40, 0x04, 0); // 1193
                                            // The control word raised OUT0 from its power-on low: that edge
                                            // is latched even while IRQ0 is masked, as on real hardware.
        outb(&mut platform, 0x21, 0xfa, 0);
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x30));
        assert_eq!(platform.acknowledge_interrupt(0), 0x30);
        outb(&mut platform, 0x20, 0x60, 0);
        assert_eq!(platform.pending_interrupt_vector(0), None);

        let period = crate::devices::pit8254::ns_of_tick(1193);
        assert_eq!(platform.next_event_ns(0), Some(period));
        let mut now = 0;
        for _ in 0..100 {
            assert_eq!(platform.pending_interrupt_vector(0), None, "at {now} ns");
            now = platform.next_event_ns(now).unwrap();
            platform.advance(now);
            assert_eq!(platform.pending_interrupt_vector(0), Some(0x30), "at {now} ns");
            assert_eq!(platform.acknowledge_interrupt(0), 0x30);
            outb(&mut platform, 0x20, 0x60, now);
        }
        assert_eq!(now, crate::devices::pit8254::ns_of_tick(100 * 1193));
        assert_eq!(platform.pit().metrics().coalesced_ticks, 0);

        // A guest that runs 10 ms without an exit gets one interrupt.
        now += 10 * MS;
        platform.advance(now);
        assert_eq!(platform.acknowledge_interrupt(0), 0x30);
        outb(&mut platform, 0x20, 0x60, now);
        platform.advance(now);
        assert_eq!(platform.pending_interrupt_vector(0), None);
        assert_eq!(platform.pit().metrics().coalesced_ticks, 9);
    }

    #[test]
    fn serial_input_raises_irq4() {
        let mut platform = platform();
        init_pic(&mut platform);
        outb(&mut platform, 0x21, 0xeb, 0); // unmask IRQ4 (and the cascade)
        outb(&mut platform, 0x3f9, 0x01, 0); // ERBFI
        assert_eq!(platform.push_console_input(b"ok", 0), 2);
        assert_eq!(platform.pending_interrupt_vector(0), None, "OUT2 is off");
        outb(&mut platform, 0x3fc, 0x0b, 0); // DTR, RTS, OUT2
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x34));
        assert_eq!(platform.acknowledge_interrupt(0), 0x34);
        assert_eq!(inb(&mut platform, 0x3fa, 0), 0x04);
        assert_eq!(inb(&mut platform, 0x3f8, 0), b'o');
        assert_eq!(inb(&mut platform, 0x3f8, 0), b'k');
        assert_eq!(inb(&mut platform, 0x3fa, 0), 0x01);
        outb(&mut platform, 0x20, 0x64, 0);
        // The line fell with the last byte; new input is a new edge.
        platform.push_console_input(b"!", 0);
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x34));
    }

    #[test]
    fn rtc_periodic_interrupts_come_through_the_slave() {
        let mut platform = platform();
        init_pic(&mut platform);
        outb(&mut platform, 0xa1, 0xfe, 0); // unmask IRQ8
        outb(&mut platform, 0x70, 0x0b, 0);
        outb(&mut platform, 0x71, 0x42, 0); // PIE
        assert_eq!(platform.pending_interrupt_vector(0), None);
        let first = platform.next_event_ns(0).unwrap();
        assert_eq!(first, 976_563);
        platform.advance(first);
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x38));
        assert_eq!(platform.acknowledge_interrupt(0), 0x38);
        // Until register C is read the flag stays up: no new edge.
        platform.advance(3 * first);
        assert_eq!(platform.pending_interrupt_vector(0), None);
        outb(&mut platform, 0x70, 0x0c, 3 * first);
        assert_eq!(inb(&mut platform, 0x71, 3 * first), 0xc0);
        outb(&mut platform, 0xa0, 0x20, 3 * first);
        outb(&mut platform, 0x20, 0x20, 3 * first);
        let next = platform.next_event_ns(3 * first).unwrap();
        platform.advance(next);
        assert_eq!(platform.acknowledge_interrupt(0), 0x38);
    }

    #[test]
    fn next_event_is_the_earliest_timer() {
        let mut platform = platform();
        assert_eq!(platform.next_event_ns(0), None);
        // RTC update interrupts once a second.
        outb(&mut platform, 0x70, 0x0a, 0);
        outb(&mut platform, 0x71, 0x20, 0);
        outb(&mut platform, 0x70, 0x0b, 0);
        outb(&mut platform, 0x71, 0x12, 0);
        assert_eq!(platform.next_event_ns(0), Some(1_000 * MS));
        // A PIT one-shot 50 ms out comes first.
        outb(&mut platform, 0x43, 0x30, 0);
        outb(&mut platform, 0x40, 0x12, 0);
        outb(&mut platform, 0x40, 0xe9, 0); // 59666 ticks
        assert_eq!(platform.next_event_ns(0), Some(crate::devices::pit8254::ns_of_tick(59_666)));
        assert_eq!(platform.next_event_ns(60 * MS), Some(60 * MS), "fired, not yet collected");
        platform.advance(60 * MS);
        assert_eq!(platform.next_event_ns(60 * MS), Some(1_000 * MS), "one-shot done: the RTC's update");
    }

    const LAPIC: u64 = 0xfee0_0000;
    const IOAPIC: u64 = 0xfec0_0000;

    fn smp(vcpus: u32) -> LegacyPlatform {
        LegacyPlatform::new(&PlatformConfig { vcpus, ..PlatformConfig::new(256 << 20, 0) })
    }

    fn ioapic_write(platform: &mut LegacyPlatform, register: u32, value: u32) {
        assert!(platform.mmio_write(0, IOAPIC, 4, register, 0));
        assert!(platform.mmio_write(0, IOAPIC + 0x10, 4, value, 0));
    }

    fn lapic_write(platform: &mut LegacyPlatform, vcpu: usize, offset: u64, value: u32, now: u64) {
        assert!(platform.mmio_write(vcpu, LAPIC + offset, 4, value, now));
    }

    fn lapic_read(platform: &mut LegacyPlatform, vcpu: usize, offset: u64) -> u32 {
        platform.mmio_read(vcpu, LAPIC + offset, 4, 0).unwrap()
    }

    #[test]
    fn mmio_reaches_the_apics_and_nothing_else() {
        let mut platform = smp(2);
        assert_eq!(lapic_read(&mut platform, 0, 0x20), 0, "vCPU 0 sees its own ID");
        assert_eq!(lapic_read(&mut platform, 1, 0x20), 1 << 24, "vCPU 1 sees its own ID");
        assert!(platform.mmio_write(0, IOAPIC, 4, 1, 0));
        assert_eq!(platform.mmio_read(0, IOAPIC + 0x10, 4, 0), Some(0x0017_0011));
        assert_eq!(platform.mmio_read(0, 0xfed0_0000, 4, 0), None, "no HPET");
        assert!(!platform.mmio_write(0, 0xfeb0_0000, 4, 0, 0));
        platform.set_apic_mode(0, ApicMode::Disabled);
        assert_eq!(platform.mmio_read(0, LAPIC + 0x20, 4, 0), None, "a disabled APIC's page is gone");
        assert!(platform.decodes_mmio(1, LAPIC + 0x20));
    }

    /// Linux with an IOAPIC: the PIT through GSI 2 to vector 0x30 on the
    /// BSP, the 8259 masked and LINT0 masked.
    #[test]
    fn the_pit_reaches_the_local_apic_through_ioapic_pin_2() {
        let mut platform = smp(1);
        init_pic(&mut platform);
        outb(&mut platform, 0x21, 0xff, 0);
        lapic_write(&mut platform, 0, 0x350, 0x1_0700, 0);
        ioapic_write(&mut platform, 0x14, 0x30); // pin 2: vector 0x30, fixed, physical, edge
        ioapic_write(&mut platform, 0x15, 0);
        outb(&mut platform, 0x43, 0x34, 0);
        outb(&mut platform, 0x40, 0xa9, 0);
        outb(&mut platform, 0x40, 0x04, 0); // 1193: 1 ms
                                            // Loading the count raised OUT0: the first edge.
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x30));
        assert_eq!(platform.acknowledge_interrupt(0), 0x30);
        assert_eq!(platform.pic().master().isr, 0, "the 8259 never saw it");
        lapic_write(&mut platform, 0, 0xb0, 0, 0);
        let next = platform.next_event_ns(0).unwrap();
        platform.advance(next);
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x30));
        // A masked pin drops the edges.
        platform.acknowledge_interrupt(0);
        lapic_write(&mut platform, 0, 0xb0, 0, next);
        ioapic_write(&mut platform, 0x14, 0x1_0030);
        platform.advance(next * 3);
        assert_eq!(platform.pending_interrupt_vector(0), None);
    }

    #[test]
    fn the_8259_reaches_only_the_bsp_and_only_through_an_extint_lint0() {
        let mut platform = smp(2);
        init_pic(&mut platform);
        outb(&mut platform, 0x21, 0xfa, 0);
        outb(&mut platform, 0x43, 0x34, 0);
        outb(&mut platform, 0x40, 0xa9, 0);
        outb(&mut platform, 0x40, 0x04, 0);
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x30), "virtual wire mode at boot");
        assert_eq!(platform.pending_interrupt_vector(1), None, "APs have no LINT0 wiring");
        lapic_write(&mut platform, 0, 0x350, 0x1_0700, 0);
        assert_eq!(platform.pending_interrupt_vector(0), None, "LINT0 masked");
        lapic_write(&mut platform, 0, 0x350, 0x0_0700, 0);
        assert_eq!(platform.acknowledge_interrupt(0), 0x30);
        // A local APIC interrupt goes before the 8259's.
        outb(&mut platform, 0x20, 0x20, 0);
        platform.advance(2_000_000);
        lapic_write(&mut platform, 0, 0x300, 0x0004_0050, 2_000_000); // self IPI 0x50
        assert_eq!(platform.acknowledge_interrupt(0), 0x50);
        assert_eq!(platform.acknowledge_interrupt(0), 0x30);
    }

    #[test]
    fn ipis_reach_their_destinations() {
        let mut platform = smp(3);
        for vcpu in 1..3 {
            lapic_write(&mut platform, vcpu, 0xf0, 0x1ff, 0);
        }
        // Fixed to APIC 2.
        lapic_write(&mut platform, 0, 0x310, 0x0200_0000, 0);
        lapic_write(&mut platform, 0, 0x300, 0x0000_4041, 0);
        assert_eq!(
            (0..3).map(|v| platform.pending_interrupt_vector(v)).collect::<Vec<_>>(),
            vec![None, None, Some(0x41)]
        );
        // NMI to all but self.
        lapic_write(&mut platform, 0, 0x300, 0x000c_4400, 0);
        assert_eq!((0..3).map(|v| platform.take_nmi(v)).collect::<Vec<_>>(), vec![false, true, true]);
        // Lowest priority among 1 and 2 (flat logical 0x02 and 0x04):
        // APIC 2's higher TPR loses.
        lapic_write(&mut platform, 1, 0xd0, 0x0200_0000, 0);
        lapic_write(&mut platform, 2, 0xd0, 0x0400_0000, 0);
        lapic_write(&mut platform, 2, 0x80, 0x20, 0);
        lapic_write(&mut platform, 0, 0x310, 0x0600_0000, 0);
        lapic_write(&mut platform, 0, 0x300, 0x0000_0961, 0);
        assert_eq!(platform.pending_interrupt_vector(1), Some(0x61));
        // INIT then SIPI wakes an AP at the vector's page.
        lapic_write(&mut platform, 0, 0x310, 0x0100_0000, 0);
        lapic_write(&mut platform, 0, 0x300, 0x0000_c500, 0);
        lapic_write(&mut platform, 0, 0x300, 0x0000_8500, 0);
        lapic_write(&mut platform, 0, 0x300, 0x0000_069a, 0);
        let ap = platform.local_apic_mut(1).unwrap();
        assert!(ap.take_init());
        assert_eq!(ap.take_sipi(), Some(0x9a));
        assert_eq!(platform.pending_interrupt_vector(1), None, "INIT cleared its requests");
    }

    /// A level-triggered pin (COM1 on IOAPIC pin 4, programmed level):
    /// while the UART holds its line up, each EOI brings the interrupt back.
    #[test]
    fn level_interrupts_come_back_after_eoi_while_the_line_is_up() {
        let mut platform = smp(1);
        lapic_write(&mut platform, 0, 0x350, 0x1_0700, 0);
        ioapic_write(&mut platform, 0x18, 0x0_8034); // pin 4: vector 0x34, level, active high
        outb(&mut platform, 0x3f9, 0x01, 0);
        outb(&mut platform, 0x3fc, 0x08, 0); // OUT2
        platform.push_console_input(b"ab", 0);
        assert_eq!(platform.acknowledge_interrupt(0), 0x34);
        assert_ne!(platform.ioapic().entry(4).unwrap() & (1 << 14), 0, "Remote IRR");
        lapic_write(&mut platform, 0, 0xb0, 0, 0);
        assert_eq!(platform.acknowledge_interrupt(0), 0x34, "still two bytes waiting");
        assert_eq!(inb(&mut platform, 0x3f8, 0), b'a');
        assert_eq!(inb(&mut platform, 0x3f8, 0), b'b');
        lapic_write(&mut platform, 0, 0xb0, 0, 0);
        assert_eq!(platform.pending_interrupt_vector(0), None);
        assert_eq!(platform.ioapic().entry(4).unwrap() & (1 << 14), 0);
    }

    /// Linux's ACPI power button: the SCI on IOAPIC pin 9 (level, active
    /// high, as the MADT's override says), enabled through PM1_EN.
    #[test]
    fn the_power_button_raises_the_sci_until_the_guest_clears_it() {
        let mut platform = smp(1);
        lapic_write(&mut platform, 0, 0x350, 0x1_0700, 0);
        ioapic_write(&mut platform, 0x22, 0x0_8039); // pin 9: vector 0x39, level, active high
        platform.press_power_button(0);
        assert_eq!(platform.pending_interrupt_vector(0), None, "the guest has not enabled the button");
        outb(&mut platform, 0x603, 0x01, 0); // PM1_EN.PWRBTN_EN (high byte)
        assert_eq!(platform.acknowledge_interrupt(0), 0x39);
        assert_eq!(inb(&mut platform, 0x601, 0), 0x01, "PWRBTN_STS");
        // The handler clears the status (write 1), then the EOI: no second SCI.
        outb(&mut platform, 0x601, 0x01, 0);
        lapic_write(&mut platform, 0, 0xb0, 0, 0);
        assert_eq!(platform.pending_interrupt_vector(0), None);
        assert!(!platform.acpi_pm().power_button_pending());
        // Without the clear, the EOI brings it back (a level interrupt).
        platform.press_power_button(0);
        assert_eq!(platform.acknowledge_interrupt(0), 0x39);
        lapic_write(&mut platform, 0, 0xb0, 0, 0);
        assert_eq!(platform.pending_interrupt_vector(0), Some(0x39));
    }

    #[test]
    fn the_apic_timer_sets_the_next_event() {
        let mut platform = smp(1);
        lapic_write(&mut platform, 0, 0x3e0, 0xb, 0);
        lapic_write(&mut platform, 0, 0x320, 0x0_00ec, 0);
        lapic_write(&mut platform, 0, 0x380, 250_000, 1_000);
        assert_eq!(platform.next_event_ns(1_000), Some(251_000));
        platform.advance(251_000);
        assert_eq!(platform.acknowledge_interrupt(0), 0xec);
        assert_eq!(platform.next_event_ns(251_000), None);
    }
}
