//! The legacy PC platform: the ISA devices on one port bus, wired to the PIC.
//!
//! The monitor hands every port I/O exit to [`LegacyPlatform::io_read`] or
//! [`LegacyPlatform::io_write`], which find the device that decodes the
//! port and then propagate the devices' interrupt lines into the PIC: IRQ0
//! from the PIT's channel 0, IRQ4 from COM1, IRQ8 from the RTC. Before
//! injecting an event, the monitor calls [`LegacyPlatform::advance`] with
//! the current guest time (timers that expired while the guest ran get
//! their say), then asks [`LegacyPlatform::pending_interrupt_vector`] and,
//! when it injects, [`LegacyPlatform::acknowledge_interrupt`]. While the
//! guest waits (HLT), [`LegacyPlatform::next_event_ns`] says when to come
//! back.
//!
//! A port no device decodes reads as all ones, as an empty ISA bus does,
//! and writes to it go nowhere; both are counted, with the last such port.
//! (Linux writes to port 0x80 as an I/O delay; those show up here.)

use super::console::ConsoleBuffer;
use super::debug_exit::DebugExit;
use super::pic8259::Pic8259Pair;
use super::pit8254::{Pit8254, PIT_IRQ};
use super::rtc_cmos::{RtcCmos, RTC_IRQ};
use super::uart16550::{Uart16550, COM1_BASE, COM1_IRQ};
use super::{all_ones, DeviceMetrics, PortDevice};

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
}

impl PlatformConfig {
    /// A platform with a 64 KiB console ring and a 4 KiB input queue.
    pub fn new(ram_bytes: u64, wall_clock_unix_secs: u64) -> Self {
        Self { ram_bytes, wall_clock_unix_secs, console_capacity: 64 * 1024, console_input_capacity: 4096 }
    }
}

/// The legacy devices of one guest and their wiring.
#[derive(Debug, Clone)]
pub struct LegacyPlatform {
    pic: Pic8259Pair,
    pit: Pit8254,
    rtc: RtcCmos,
    com1: Uart16550,
    debug_exit: DebugExit,
    /// All port accesses, and the unclaimed ones.
    metrics: DeviceMetrics,
}

impl LegacyPlatform {
    pub fn new(config: &PlatformConfig) -> Self {
        Self {
            pic: Pic8259Pair::new(),
            pit: Pit8254::new(),
            rtc: RtcCmos::new(config.wall_clock_unix_secs, config.ram_bytes),
            com1: Uart16550::new(COM1_BASE, config.console_capacity, config.console_input_capacity),
            debug_exit: DebugExit::new(),
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

    /// Brings the timers up to `now_ns` and the PIC's inputs with them.
    pub fn advance(&mut self, now_ns: u64) {
        self.propagate_lines(now_ns);
    }

    /// When a timer next raises an interrupt line, if any is armed: the
    /// time to wake a waiting guest at. Never earlier than `now_ns`.
    pub fn next_event_ns(&self, now_ns: u64) -> Option<u64> {
        match (self.pit.next_event_ns(now_ns), self.rtc.next_event_ns(now_ns)) {
            (Some(pit), Some(rtc)) => Some(pit.min(rtc)),
            (pit, rtc) => pit.or(rtc),
        }
    }

    /// The vector the PIC would deliver now, if it asserts INT.
    pub fn pending_interrupt_vector(&self) -> Option<u8> {
        self.pic.pending_vector()
    }

    /// The interrupt acknowledge for an injected external interrupt.
    pub fn acknowledge_interrupt(&mut self) -> u8 {
        self.pic.acknowledge()
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

    /// Whether the guest disabled NMI (port 0x70 bit 7).
    pub fn nmi_disabled(&self) -> bool {
        self.rtc.nmi_disabled()
    }

    /// The bus's own counters: every access, and those no device claimed.
    pub fn metrics(&self) -> &DeviceMetrics {
        &self.metrics
    }

    /// Every device's counters by name, the bus's own first.
    pub fn device_metrics(&self) -> [(&'static str, DeviceMetrics); 6] {
        [
            ("bus", self.metrics),
            ("pic", *self.pic.metrics()),
            ("pit", *self.pit.metrics()),
            ("rtc", *self.rtc.metrics()),
            ("com1", *self.com1.metrics()),
            ("debug-exit", *self.debug_exit.metrics()),
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

    fn device_for(&mut self, port: u16) -> Option<&mut dyn PortDevice> {
        let devices: [&mut dyn PortDevice; 5] =
            [&mut self.pic, &mut self.pit, &mut self.rtc, &mut self.com1, &mut self.debug_exit];
        devices.into_iter().find(|device| device.decodes(port))
    }

    /// Drives the PIC's inputs from the devices' lines.
    fn propagate_lines(&mut self, now_ns: u64) {
        // Channel 0's periodic edges may have come and gone between two
        // exits; each batch is one rising edge for the PIC.
        if self.pit.take_irq0_edges(now_ns) > 0 {
            self.pic.set_irq(PIT_IRQ, false);
            self.pic.set_irq(PIT_IRQ, true);
        }
        self.pic.set_irq(PIT_IRQ, self.pit.irq0_level(now_ns));
        self.pic.set_irq(COM1_IRQ, self.com1.irq_level());
        self.rtc.advance(now_ns);
        self.pic.set_irq(RTC_IRQ, self.rtc.irq_level());
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
        assert_eq!(names, ["bus", "pic", "pit", "rtc", "com1", "debug-exit"]);
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
        assert_eq!(platform.pending_interrupt_vector(), Some(0x30));
        assert_eq!(platform.acknowledge_interrupt(), 0x30);
        outb(&mut platform, 0x20, 0x60, 0);
        assert_eq!(platform.pending_interrupt_vector(), None);

        let period = crate::devices::pit8254::ns_of_tick(1193);
        assert_eq!(platform.next_event_ns(0), Some(period));
        let mut now = 0;
        for _ in 0..100 {
            assert_eq!(platform.pending_interrupt_vector(), None, "at {now} ns");
            now = platform.next_event_ns(now).unwrap();
            platform.advance(now);
            assert_eq!(platform.pending_interrupt_vector(), Some(0x30), "at {now} ns");
            assert_eq!(platform.acknowledge_interrupt(), 0x30);
            outb(&mut platform, 0x20, 0x60, now);
        }
        assert_eq!(now, crate::devices::pit8254::ns_of_tick(100 * 1193));
        assert_eq!(platform.pit().metrics().coalesced_ticks, 0);

        // A guest that runs 10 ms without an exit gets one interrupt.
        now += 10 * MS;
        platform.advance(now);
        assert_eq!(platform.acknowledge_interrupt(), 0x30);
        outb(&mut platform, 0x20, 0x60, now);
        platform.advance(now);
        assert_eq!(platform.pending_interrupt_vector(), None);
        assert_eq!(platform.pit().metrics().coalesced_ticks, 9);
    }

    #[test]
    fn serial_input_raises_irq4() {
        let mut platform = platform();
        init_pic(&mut platform);
        outb(&mut platform, 0x21, 0xeb, 0); // unmask IRQ4 (and the cascade)
        outb(&mut platform, 0x3f9, 0x01, 0); // ERBFI
        assert_eq!(platform.push_console_input(b"ok", 0), 2);
        assert_eq!(platform.pending_interrupt_vector(), None, "OUT2 is off");
        outb(&mut platform, 0x3fc, 0x0b, 0); // DTR, RTS, OUT2
        assert_eq!(platform.pending_interrupt_vector(), Some(0x34));
        assert_eq!(platform.acknowledge_interrupt(), 0x34);
        assert_eq!(inb(&mut platform, 0x3fa, 0), 0x04);
        assert_eq!(inb(&mut platform, 0x3f8, 0), b'o');
        assert_eq!(inb(&mut platform, 0x3f8, 0), b'k');
        assert_eq!(inb(&mut platform, 0x3fa, 0), 0x01);
        outb(&mut platform, 0x20, 0x64, 0);
        // The line fell with the last byte; new input is a new edge.
        platform.push_console_input(b"!", 0);
        assert_eq!(platform.pending_interrupt_vector(), Some(0x34));
    }

    #[test]
    fn rtc_periodic_interrupts_come_through_the_slave() {
        let mut platform = platform();
        init_pic(&mut platform);
        outb(&mut platform, 0xa1, 0xfe, 0); // unmask IRQ8
        outb(&mut platform, 0x70, 0x0b, 0);
        outb(&mut platform, 0x71, 0x42, 0); // PIE
        assert_eq!(platform.pending_interrupt_vector(), None);
        let first = platform.next_event_ns(0).unwrap();
        assert_eq!(first, 976_563);
        platform.advance(first);
        assert_eq!(platform.pending_interrupt_vector(), Some(0x38));
        assert_eq!(platform.acknowledge_interrupt(), 0x38);
        // Until register C is read the flag stays up: no new edge.
        platform.advance(3 * first);
        assert_eq!(platform.pending_interrupt_vector(), None);
        outb(&mut platform, 0x70, 0x0c, 3 * first);
        assert_eq!(inb(&mut platform, 0x71, 3 * first), 0xc0);
        outb(&mut platform, 0xa0, 0x20, 3 * first);
        outb(&mut platform, 0x20, 0x20, 3 * first);
        let next = platform.next_event_ns(3 * first).unwrap();
        platform.advance(next);
        assert_eq!(platform.acknowledge_interrupt(), 0x38);
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
}
