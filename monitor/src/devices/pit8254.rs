//! The Intel 8254 programmable interval timer, and port 0x61.
//!
//! Three 16-bit down-counters clocked at 1.193182 MHz, at ports 0x40-0x42,
//! programmed through the control word register at 0x43. On a PC, channel
//! 0's output drives IRQ0, channel 1 once refreshed DRAM, and channel 2
//! feeds the speaker; its gate and output are wired to port 0x61 ("NMI
//! status and control"), which is how Linux calibrates the TSC.
//!
//! A control word picks a channel, an access mode (latch command, low byte,
//! high byte, or low then high byte through a flip-flop), a counting mode
//! and binary or BCD counting. Writing it resets the channel: OUT goes to
//! its initial level (low in mode 0, high otherwise) and the channel waits
//! for a count. The six modes:
//! - 0, interrupt on terminal count: OUT low until the count reaches 0;
//! - 1, hardware one-shot: a gate rising edge starts it, OUT low until 0;
//! - 2, rate generator: OUT low for one clock every N clocks;
//! - 3, square wave: OUT high for ceil(N/2) clocks, low for floor(N/2);
//! - 4, software strobe: one clock of OUT low when the count reaches 0;
//! - 5, hardware strobe: the same, started by a gate rising edge.
//!
//! A new count takes effect at once in modes 0 and 4 (and in mode 0 the
//! first byte of a low/high pair already stops the count), at the end of
//! the current period in modes 2 and 3 (in mode 3 the real chip switches
//! at the end of a half period; close enough), and at the next gate
//! trigger in modes 1 and 5.
//!
//! The counters are computed from the guest's virtual time when read, not
//! ticked. BCD counting is supported. Channel 0's rising output edges are
//! collected for IRQ0; if the guest runs for several periods between exits,
//! they become one interrupt and the rest are counted as coalesced.

use core::ops::RangeInclusive;

use super::{ByteRegisters, DeviceMetrics};

/// The counters' input clock.
pub const PIT_FREQUENCY_HZ: u64 = 1_193_182;
/// Channel 0's ISA interrupt line.
pub const PIT_IRQ: u8 = 0;

const CHANNEL0: u16 = 0x40; // channel 0 count (IRQ0)
const CHANNEL2: u16 = 0x42; // channel 2 count (speaker, port 0x61)
const CONTROL: u16 = 0x43; // control word (write-only)
const PORT_B: u16 = 0x61; // NMI status and control

// Control word fields.
const CW_CHANNEL_SHIFT: u8 = 6; // SC1-SC0: the channel, or 3 for read-back
const CW_ACCESS_SHIFT: u8 = 4; // RW1-RW0: 0 is the counter latch command
const CW_MODE_SHIFT: u8 = 1; // M2-M0
const CW_BCD: u8 = 0x01; // count in BCD
const CW_READ_BACK: u8 = 3; // SC value of the read-back command

// Read-back command bits (active low latch selects).
const READ_BACK_NO_COUNT: u8 = 0x20; // do not latch the counts
const READ_BACK_NO_STATUS: u8 = 0x10; // do not latch the statuses
const READ_BACK_CHANNELS_SHIFT: u8 = 1; // bits 1-3: channels 0-2
const READ_BACK_RESERVED: u8 = 0x01; // must be 0

// Status byte bits, besides the control word's low six.
const STATUS_OUT: u8 = 0x80; // the output pin
const STATUS_NULL_COUNT: u8 = 0x40; // the last count written is not loaded yet

// Port 0x61 bits.
const PORT_B_GATE2: u8 = 0x01; // channel 2's gate
const PORT_B_WRITABLE: u8 = 0x0f; // gate 2, speaker data, parity and I/O check disables
const PORT_B_REFRESH: u8 = 0x10; // toggles; here on every read
const PORT_B_OUT2: u8 = 0x20; // channel 2's output

/// How the guest reads and writes a channel's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Low = 1,
    High = 2,
    LowHigh = 3,
}

/// A counter with a count in effect.
#[derive(Debug, Clone, Copy)]
struct Counting {
    /// The count in effect: 1-65536 (1-10000 in BCD; more with bad digits).
    n: u64,
    /// The clock tick at which counting last started or resumed.
    since: u64,
    /// Ticks counted before `since`.
    before: u64,
    /// Whether the gate lets it count.
    running: bool,
    /// Modes 2 and 3: a new count, and the elapsed tick (the end of the
    /// period it was written in) from which it is in effect.
    next: Option<(u64, u64)>,
}

impl Counting {
    fn start(n: u64, now: u64, running: bool) -> Self {
        Self { n, since: now, before: 0, running, next: None }
    }

    /// Ticks counted by `now`.
    fn elapsed(&self, now: u64) -> u64 {
        self.before + if self.running { now.saturating_sub(self.since) } else { 0 }
    }

    /// The count in effect at `now` and the ticks counted under it.
    fn at(&self, now: u64) -> (u64, u64) {
        let elapsed = self.elapsed(now);
        match self.next {
            Some((n, from)) if elapsed >= from => (n, elapsed - from),
            _ => (self.n, elapsed),
        }
    }

    fn pause(&mut self, now: u64) {
        self.before = self.elapsed(now);
        self.running = false;
    }

    fn resume(&mut self, now: u64) {
        if !self.running {
            self.since = now;
            self.running = true;
        }
    }
}

/// Rising edges of OUT in the elapsed ticks `(from, to]` of a count `n`.
fn rising_edges(mode: u8, n: u64, from: u64, to: u64) -> u64 {
    if to <= from {
        return 0;
    }
    match mode {
        // OUT rises at the terminal count.
        0 | 1 => u64::from(from < n && n <= to),
        // OUT rises as each period restarts.
        2 | 3 => to / n - from / n,
        // OUT rises after its one clock low at the terminal count.
        _ => u64::from(from <= n && n < to),
    }
}

/// The first rising edge after elapsed tick `after`.
fn next_rising_edge(mode: u8, n: u64, after: u64) -> Option<u64> {
    match mode {
        0 | 1 => (after < n).then_some(n),
        2 | 3 => Some((after / n + 1) * n),
        _ => (after <= n).then_some(n + 1),
    }
}

#[derive(Debug, Clone)]
struct Channel {
    /// M2-M0 as programmed (6 and 7 are modes 2 and 3).
    mode: u8,
    access: Access,
    bcd: bool,
    /// The count register: the last count written.
    count_register: u16,
    count_written: bool,
    /// The write flip-flop: the low byte of a low/high pair, until the high
    /// byte comes.
    low_byte: Option<u8>,
    /// The read flip-flop of a low/high pair.
    read_high_next: bool,
    count_latch: Option<u16>,
    status_latch: Option<u8>,
    null_count: bool,
    gate: bool,
    counting: Option<Counting>,
    /// OUT while no count is in effect: low after a mode-0 control word.
    idle_out: bool,
    /// Rising edges of OUT not yet collected, and the elapsed tick up to
    /// which they were counted.
    edges: u64,
    edges_counted_to: u64,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Self {
            mode: 0,
            access: Access::LowHigh,
            bcd: false,
            count_register: 0,
            count_written: false,
            low_byte: None,
            read_high_next: false,
            count_latch: None,
            status_latch: None,
            null_count: true,
            gate,
            counting: None,
            idle_out: false,
            edges: 0,
            edges_counted_to: 0,
        }
    }

    fn mode(&self) -> u8 {
        if self.mode >= 6 {
            self.mode - 4
        } else {
            self.mode
        }
    }

    /// Where the counter wraps: 0 stands for 65536 (10000 in BCD).
    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x1_0000
        }
    }

    /// The count a count register value stands for. Bad BCD digits (the
    /// caller counts them) weigh what they read as.
    fn initial_count(&self, raw: u16) -> u64 {
        let value = if self.bcd {
            (0..4).rev().fold(0, |value, digit| value * 10 + u64::from((raw >> (4 * digit)) & 0xf))
        } else {
            u64::from(raw)
        };
        if value == 0 {
            self.modulus()
        } else {
            value
        }
    }

    /// Collects OUT's rising edges up to `now`, and lets a pending count
    /// of modes 2 and 3 take over if its period has come.
    fn advance(&mut self, now: u64) {
        let mode = self.mode();
        let Some(counting) = self.counting.as_mut() else {
            return;
        };
        let elapsed = counting.elapsed(now);
        if let Some((n, from)) = counting.next {
            if elapsed >= from {
                self.edges += rising_edges(mode, counting.n, self.edges_counted_to, from);
                counting.n = n;
                counting.next = None;
                counting.before = elapsed - from;
                counting.since = now;
                self.edges_counted_to = 0;
                self.null_count = false;
            }
        }
        let elapsed = counting.elapsed(now);
        self.edges += rising_edges(mode, counting.n, self.edges_counted_to, elapsed);
        self.edges_counted_to = self.edges_counted_to.max(elapsed);
    }

    fn start(&mut self, n: u64, now: u64, running: bool) {
        // Restarting can itself raise OUT: e.g. a mode-4 count rewritten in
        // the one clock its strobe holds OUT low. That edge is real too.
        let was_high = self.out(now);
        self.counting = Some(Counting::start(n, now, running));
        self.null_count = false;
        self.edges_counted_to = 0;
        if !was_high && self.out(now) {
            self.edges += 1;
        }
    }

    fn out(&self, now: u64) -> bool {
        let Some(counting) = &self.counting else {
            return self.idle_out;
        };
        let mode = self.mode();
        if !counting.running && (mode == 2 || mode == 3) {
            // A low gate forces OUT high in modes 2 and 3.
            return true;
        }
        let (n, elapsed) = counting.at(now);
        match mode {
            0 | 1 => elapsed >= n,
            2 => elapsed % n != n - 1,
            3 => elapsed % n < n.div_ceil(2),
            _ => elapsed != n,
        }
    }

    /// The counting element's value, in the channel's number format.
    fn count(&self, now: u64) -> u16 {
        let Some(counting) = &self.counting else {
            return self.count_register;
        };
        let (n, elapsed) = counting.at(now);
        let modulus = self.modulus();
        let value = match self.mode() {
            2 => n - elapsed % n,
            3 => {
                // Mode 3 counts down by two through each half period, from
                // N rounded down to even.
                let phase = elapsed % n;
                let half = n.div_ceil(2);
                let into_half = if phase < half { phase } else { phase - half };
                (n & !1).saturating_sub(2 * into_half)
            }
            _ => n + modulus - elapsed % modulus,
        } % modulus;
        if self.bcd {
            (0..4).fold(0, |bcd, digit| bcd | ((((value / 10u64.pow(digit)) % 10) as u16) << (4 * digit)))
        } else {
            value as u16
        }
    }

    fn status(&self, now: u64) -> u8 {
        let mut status = ((self.access as u8) << CW_ACCESS_SHIFT) | (self.mode << CW_MODE_SHIFT);
        if self.bcd {
            status |= CW_BCD;
        }
        if self.out(now) {
            status |= STATUS_OUT;
        }
        if self.null_count {
            status |= STATUS_NULL_COUNT;
        }
        status
    }

    /// A control word for this channel.
    fn program(&mut self, mode: u8, access: Access, bcd: bool, now: u64) {
        self.advance(now);
        self.mode = mode;
        self.access = access;
        self.bcd = bcd;
        self.counting = None;
        self.count_written = false;
        self.low_byte = None;
        self.read_high_next = false;
        self.count_latch = None;
        self.status_latch = None;
        self.null_count = true;
        self.idle_out = self.mode() != 0;
        self.edges_counted_to = 0;
    }

    fn latch_count(&mut self, now: u64) {
        // A second latch before the first is read is ignored.
        if self.count_latch.is_none() {
            self.count_latch = Some(self.count(now));
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.status_latch.is_none() {
            self.status_latch = Some(self.status(now));
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        // A latched status is read first, then a latched count, else the
        // live count.
        if let Some(status) = self.status_latch.take() {
            return status;
        }
        let value = self.count_latch.unwrap_or_else(|| self.count(now));
        let high = match self.access {
            Access::Low => false,
            Access::High => true,
            Access::LowHigh => {
                let high = self.read_high_next;
                self.read_high_next = !high;
                high
            }
        };
        // A latched count is held until all of it has been read.
        if high || self.access == Access::Low {
            self.count_latch = None;
        }
        if high {
            (value >> 8) as u8
        } else {
            value as u8
        }
    }

    /// A count byte from the guest. Returns false if it was invalid.
    fn write(&mut self, byte: u8, now: u64) -> bool {
        match self.access {
            Access::Low => self.load(u16::from(byte), now),
            Access::High => self.load(u16::from(byte) << 8, now),
            Access::LowHigh => match self.low_byte.take() {
                Some(low) => self.load(u16::from_le_bytes([low, byte]), now),
                None => {
                    self.low_byte = Some(byte);
                    if self.mode() == 0 {
                        // Mode 0: the first byte stops the count, OUT low.
                        self.advance(now);
                        self.counting = None;
                        self.idle_out = false;
                    }
                    true
                }
            },
        }
    }

    /// A complete count written. Returns false if it was invalid.
    fn load(&mut self, raw: u16, now: u64) -> bool {
        self.advance(now);
        self.count_register = raw;
        self.count_written = true;
        self.null_count = true;
        let n = self.initial_count(raw);
        let mode = self.mode();
        match mode {
            0 | 4 => self.start(n, now, self.gate),
            2 | 3 => match self.counting.as_mut() {
                Some(counting) if counting.running => {
                    let elapsed = counting.elapsed(now);
                    let from = match counting.next {
                        Some((_, from)) => from,
                        None => (elapsed / counting.n + 1) * counting.n,
                    };
                    counting.next = Some((n, from));
                }
                _ => self.start(n, now, self.gate),
            },
            // Modes 1 and 5 wait for a gate trigger.
            _ => {}
        }
        let bad_bcd = self.bcd && (0..4).any(|digit| (raw >> (4 * digit)) & 0xf > 9);
        // A count of 1 is illegal in modes 2 and 3.
        let bad_count = (mode == 2 || mode == 3) && n == 1;
        !bad_bcd && !bad_count
    }

    fn set_gate(&mut self, level: bool, now: u64) {
        self.advance(now);
        if level == self.gate {
            return;
        }
        self.gate = level;
        let n = self.initial_count(self.count_register);
        match self.mode() {
            // Modes 0 and 4 count only while the gate is high.
            0 | 4 => {
                if let Some(counting) = self.counting.as_mut() {
                    if level {
                        counting.resume(now);
                    } else {
                        counting.pause(now);
                    }
                }
            }
            // Modes 2 and 3 stop while it is low and restart as it rises.
            2 | 3 => {
                if level {
                    if self.count_written {
                        self.start(n, now, true);
                    }
                } else if let Some(counting) = self.counting.as_mut() {
                    counting.pause(now);
                }
            }
            // Modes 1 and 5 (re)start on a rising edge.
            _ => {
                if level && self.count_written {
                    self.start(n, now, true);
                }
            }
        }
    }

    /// The clock tick of OUT's next rising edge (`now` if one is waiting to
    /// be collected).
    fn next_edge_tick(&self, now: u64) -> Option<u64> {
        if self.edges > 0 {
            return Some(now);
        }
        let counting = self.counting.as_ref()?;
        if !counting.running {
            return None;
        }
        let elapsed = counting.elapsed(now);
        if let Some((_, from)) = counting.next {
            if elapsed >= from {
                // The switch to the new count is itself a rising edge.
                return Some(now);
            }
        }
        let edge = next_rising_edge(self.mode(), counting.n, self.edges_counted_to)?;
        Some(now + edge.saturating_sub(elapsed))
    }
}

/// Clock ticks by `now_ns`.
pub(crate) fn ticks_at(now_ns: u64) -> u64 {
    (u128::from(now_ns) * u128::from(PIT_FREQUENCY_HZ) / 1_000_000_000) as u64
}

/// The first nanosecond at which `tick` has happened.
pub(crate) fn ns_of_tick(tick: u64) -> u64 {
    let ns = (u128::from(tick) * 1_000_000_000).div_ceil(u128::from(PIT_FREQUENCY_HZ));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The 8254 and port 0x61.
#[derive(Debug, Clone)]
pub struct Pit8254 {
    channels: [Channel; 3],
    /// Port 0x61's writable bits.
    port_b: u8,
    refresh: bool,
    metrics: DeviceMetrics,
}

impl Default for Pit8254 {
    fn default() -> Self {
        Self::new()
    }
}

static PORTS: [RangeInclusive<u16>; 2] = [CHANNEL0..=CONTROL, PORT_B..=PORT_B];

impl Pit8254 {
    /// The timer with no channel programmed (each as after a mode-0 control
    /// word, OUT low) and channel 2's gate low.
    pub fn new() -> Self {
        Self {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port_b: 0,
            refresh: false,
            metrics: DeviceMetrics::default(),
        }
    }

    /// The level of channel 0's output, IRQ0.
    pub fn irq0_level(&self, now_ns: u64) -> bool {
        self.channels[0].out(ticks_at(now_ns))
    }

    /// Channel 0's rising output edges since the last call. More than one
    /// means the guest ran through several periods without an exit; the
    /// platform delivers one interrupt for all of them, and the rest are
    /// counted as coalesced.
    pub fn take_irq0_edges(&mut self, now_ns: u64) -> u64 {
        let channel = &mut self.channels[0];
        channel.advance(ticks_at(now_ns));
        let edges = core::mem::take(&mut channel.edges);
        self.metrics.coalesced_ticks += edges.saturating_sub(1);
        edges
    }

    /// When channel 0's output next rises, for the scheduler.
    pub fn next_event_ns(&self, now_ns: u64) -> Option<u64> {
        let tick = self.channels[0].next_edge_tick(ticks_at(now_ns))?;
        Some(ns_of_tick(tick).max(now_ns))
    }

    /// The level of channel 2's output, as port 0x61 bit 5 shows it.
    pub fn channel2_out(&self, now_ns: u64) -> bool {
        self.channels[2].out(ticks_at(now_ns))
    }

    fn write_control(&mut self, value: u8, now: u64) {
        let channel = value >> CW_CHANNEL_SHIFT;
        if channel == CW_READ_BACK {
            self.read_back(value, now);
            return;
        }
        let channel = &mut self.channels[usize::from(channel)];
        let access = match (value >> CW_ACCESS_SHIFT) & 3 {
            0 => {
                channel.latch_count(now);
                return;
            }
            1 => Access::Low,
            2 => Access::High,
            _ => Access::LowHigh,
        };
        channel.program((value >> CW_MODE_SHIFT) & 7, access, value & CW_BCD != 0, now);
    }

    /// The read-back command: latch the count and/or status of any of the
    /// channels at once.
    fn read_back(&mut self, value: u8, now: u64) {
        let selected = (value >> READ_BACK_CHANNELS_SHIFT) & 7;
        if value & READ_BACK_RESERVED != 0 || selected == 0 {
            self.metrics.note_invalid_command(CONTROL);
        }
        for (index, channel) in self.channels.iter_mut().enumerate() {
            if selected & (1 << index) == 0 {
                continue;
            }
            if value & READ_BACK_NO_STATUS == 0 {
                channel.latch_status(now);
            }
            if value & READ_BACK_NO_COUNT == 0 {
                channel.latch_count(now);
            }
        }
    }

    fn read_port_b(&mut self, now: u64) -> u8 {
        self.refresh = !self.refresh;
        let mut value = self.port_b;
        if self.refresh {
            value |= PORT_B_REFRESH;
        }
        if self.channels[2].out(now) {
            value |= PORT_B_OUT2;
        }
        value
    }

    fn write_port_b(&mut self, value: u8, now: u64) {
        // Bits 4-7 are status; guests write back what they read, so
        // writing them is not odd.
        self.port_b = value & PORT_B_WRITABLE;
        self.channels[2].set_gate(value & PORT_B_GATE2 != 0, now);
    }
}

impl ByteRegisters for Pit8254 {
    fn register_ports(&self) -> &[RangeInclusive<u16>] {
        &PORTS
    }

    fn counters(&self) -> &DeviceMetrics {
        &self.metrics
    }

    fn metrics_mut(&mut self) -> &mut DeviceMetrics {
        &mut self.metrics
    }

    fn read_byte(&mut self, port: u16, now_ns: u64) -> u8 {
        let now = ticks_at(now_ns);
        match port {
            CHANNEL0..=CHANNEL2 => self.channels[usize::from(port - CHANNEL0)].read(now),
            CONTROL => {
                self.metrics.note_wrong_direction(port);
                0xff
            }
            PORT_B => self.read_port_b(now),
            _ => {
                self.metrics.note_invalid_command(port);
                0xff
            }
        }
    }

    fn write_byte(&mut self, port: u16, byte: u8, now_ns: u64) {
        let now = ticks_at(now_ns);
        match port {
            CHANNEL0..=CHANNEL2 => {
                if !self.channels[usize::from(port - CHANNEL0)].write(byte, now) {
                    self.metrics.note_invalid_command(port);
                }
            }
            CONTROL => self.write_control(byte, now),
            PORT_B => self.write_port_b(byte, now),
            _ => self.metrics.note_invalid_command(port),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::devices::PortDevice;
    use proptest::prelude::*;

    use super::*;

    /// Linux's PIT_LATCH for HZ=1000.
    const LATCH: u16 = 1193;

    fn outb(pit: &mut Pit8254, port: u16, value: u8, now_ns: u64) {
        pit.write(port, 1, u32::from(value), now_ns);
    }

    fn inb(pit: &mut Pit8254, port: u16, now_ns: u64) -> u8 {
        let value = pit.read(port, 1, now_ns);
        assert!(value <= 0xff);
        value as u8
    }

    /// The nanosecond at which clock tick `tick` after `start_ns` has happened.
    fn tick_after(start_ns: u64, tick: u64) -> u64 {
        ns_of_tick(ticks_at(start_ns) + tick)
    }

    #[test]
    fn time_conversions_round_the_right_way() {
        assert_eq!(ticks_at(0), 0);
        assert_eq!(ticks_at(838), 0);
        assert_eq!(ticks_at(839), 1);
        assert_eq!(ns_of_tick(1), 839);
        assert_eq!(ticks_at(1_000_000_000), PIT_FREQUENCY_HZ);
        for tick in [1, 2, 1193, 65536, 1 << 40] {
            assert_eq!(ticks_at(ns_of_tick(tick)), tick);
            assert_eq!(ticks_at(ns_of_tick(tick) - 1), tick - 1);
        }
        assert_eq!(ns_of_tick(u64::MAX), u64::MAX);
    }

    /// Linux's periodic clock event: `outb(0x34, 0x43)` (channel 0, lo/hi,
    /// mode 2), then PIT_LATCH low and high.
    #[test]
    fn periodic_mode_2_edges_over_time() {
        let mut pit = Pit8254::new();
        let start = 1_000_000;
        assert!(!pit.irq0_level(start), "idle like after a mode-0 control word");
        outb(&mut pit, 0x43, 0x34, start);
        assert!(pit.irq0_level(start), "mode 2 starts with OUT high");
        assert_eq!(pit.next_event_ns(start), None, "no count yet");
        outb(&mut pit, 0x40, LATCH as u8, start);
        outb(&mut pit, 0x40, (LATCH >> 8) as u8, start);
        let first = tick_after(start, u64::from(LATCH));
        assert_eq!(pit.next_event_ns(start), Some(first));
        assert_eq!(pit.take_irq0_edges(first - 1), 0);
        // The one clock of OUT low just before the period ends.
        assert!(!pit.irq0_level(tick_after(start, u64::from(LATCH) - 1)));
        assert_eq!(pit.take_irq0_edges(first), 1);
        assert!(pit.irq0_level(first));
        let second = tick_after(start, 2 * u64::from(LATCH));
        assert_eq!(pit.next_event_ns(first), Some(second));
        assert_eq!(pit.take_irq0_edges(second), 1);
        // The guest runs for ten periods without an exit: one interrupt,
        // nine coalesced.
        let later = tick_after(start, 12 * u64::from(LATCH));
        assert_eq!(pit.take_irq0_edges(later), 10);
        assert_eq!(pit.metrics().coalesced_ticks, 9);
        assert_eq!(pit.take_irq0_edges(later), 0);
        assert_eq!(pit.next_event_ns(later), Some(tick_after(start, 13 * u64::from(LATCH))));
        assert_eq!(pit.metrics().odd_total(), 9);
    }

    /// Linux's one-shot clock event: `outb(0x38, 0x43)` (mode 4), a count
    /// per event, and shutdown with mode 0 and a count of 0.
    #[test]
    fn oneshot_mode_4_like_linux_clockevents() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x38, 0);
        let t0 = 5_000;
        outb(&mut pit, 0x40, 100, t0);
        outb(&mut pit, 0x40, 0, t0);
        // OUT pulses low at the terminal count and rises a clock later.
        let fire = tick_after(t0, 101);
        assert_eq!(pit.next_event_ns(t0), Some(fire));
        assert!(!pit.irq0_level(tick_after(t0, 100)));
        assert_eq!(pit.take_irq0_edges(fire - 1), 0);
        assert_eq!(pit.take_irq0_edges(fire), 1);
        assert_eq!(pit.next_event_ns(fire), None, "one-shot");
        assert_eq!(pit.take_irq0_edges(fire + 100_000_000), 0, "the counter wraps, but OUT stays high");

        // The next event, programmed while idle.
        let t1 = fire + 1_000_000;
        outb(&mut pit, 0x40, 0x10, t1);
        outb(&mut pit, 0x40, 0x00, t1);
        assert_eq!(pit.next_event_ns(t1), Some(tick_after(t1, 17)));
        // Reprogrammed before it fired: the new count replaces it.
        let t2 = tick_after(t1, 5);
        outb(&mut pit, 0x40, 0x20, t2);
        outb(&mut pit, 0x40, 0x00, t2);
        assert_eq!(pit.take_irq0_edges(tick_after(t1, 17)), 0);
        assert_eq!(pit.next_event_ns(t2), Some(tick_after(t2, 33)));
        assert_eq!(pit.take_irq0_edges(tick_after(t2, 33)), 1);

        // Shutdown: mode 0 and a count of 0, which fires once 65536 clocks
        // later, as the real chip does.
        let t3 = tick_after(t2, 1000);
        outb(&mut pit, 0x43, 0x30, t3);
        outb(&mut pit, 0x40, 0, t3);
        outb(&mut pit, 0x40, 0, t3);
        assert!(!pit.irq0_level(t3));
        assert_eq!(pit.next_event_ns(t3), Some(tick_after(t3, 65536)));
        assert_eq!(pit.metrics().odd_total(), 0);
    }

    /// Mode 0 one-shot on channel 0, as simple test kernels use it: OUT
    /// rises at the terminal count and stays high; the first byte of a new
    /// low/high count drops it again.
    #[test]
    fn interrupt_on_terminal_count() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x30, 0);
        outb(&mut pit, 0x40, 0xe8, 0);
        assert_eq!(pit.next_event_ns(0), None, "half a count is no count");
        outb(&mut pit, 0x40, 0x03, 0);
        let fire = ns_of_tick(1000);
        assert_eq!(pit.next_event_ns(0), Some(fire));
        assert!(!pit.irq0_level(fire - 1));
        assert!(pit.irq0_level(fire));
        assert_eq!(pit.take_irq0_edges(fire + 1_000_000), 1);
        assert!(pit.irq0_level(fire + 1_000_000));
        outb(&mut pit, 0x40, 0x10, fire + 1_000_000);
        assert!(!pit.irq0_level(fire + 1_000_000));
        assert_eq!(pit.next_event_ns(fire + 1_000_000), None);
    }

    /// Linux's `pit_calibrate_tsc()`: gate channel 2 on through port 0x61
    /// with the speaker off, mode 0 for 10 ms, then poll port 0x61 bit 5.
    #[test]
    fn tsc_calibration_through_port_0x61() {
        let mut pit = Pit8254::new();
        let latch: u16 = 11931; // PIT_TICK_RATE / (1000 / 10)
        let t0 = 3_000_000_000;
        let port_b = inb(&mut pit, 0x61, t0);
        assert_eq!(port_b & 0x0f, 0);
        outb(&mut pit, 0x61, (port_b & !0x02) | 0x01, t0);
        outb(&mut pit, 0x43, 0xb0, t0);
        outb(&mut pit, 0x42, latch as u8, t0);
        outb(&mut pit, 0x42, (latch >> 8) as u8, t0);
        let done = tick_after(t0, u64::from(latch));
        let mut polls = 0;
        let mut now = t0;
        let mut refresh = alloc::vec::Vec::new();
        while inb(&mut pit, 0x61, now) & 0x20 == 0 {
            refresh.push(inb(&mut pit, 0x61, now) & 0x10);
            polls += 1;
            now += 1_000; // the guest's loop takes about a microsecond
            assert!(now <= done + 1_000, "OUT2 never rose");
        }
        assert!(now >= done && now < done + 1_000);
        assert_eq!(polls, (done - t0).div_ceil(1_000));
        // The refresh bit toggles on every read, so loops waiting on it
        // make progress.
        assert!(refresh.windows(2).all(|pair| pair[0] == pair[1]));
        assert_eq!(inb(&mut pit, 0x61, now) & 0x10, 0x10);
        assert_eq!(inb(&mut pit, 0x61, now) & 0x10, 0x00);
        // Port 0x61 keeps gate and speaker bits; OUT2 stays high.
        assert_eq!(inb(&mut pit, 0x61, now) & 0x2f, 0x21);
        // Gate off: the count freezes (mode 0 counts only with the gate up).
        outb(&mut pit, 0x61, 0x00, now);
        let count = pit.channels[2].count(ticks_at(now));
        assert_eq!(pit.channels[2].count(ticks_at(now + 1_000_000)), count);
        assert_eq!(pit.metrics().odd_total(), 0);
    }

    /// Linux's `quick_pit_calibrate()`: mode 0 from 0xffff on channel 2,
    /// watching the high byte of the live count step down.
    #[test]
    fn quick_calibration_reads_the_live_count() {
        let mut pit = Pit8254::new();
        let t0 = 10_000;
        outb(&mut pit, 0x61, 0x01, t0);
        outb(&mut pit, 0x43, 0xb0, t0);
        outb(&mut pit, 0x42, 0xff, t0);
        outb(&mut pit, 0x42, 0xff, t0);
        // pit_verify_msb(0) is just a delay; then expect 0xff, 0xfe, ...
        for msb in [0xffu8, 0xfe, 0xfd, 0x80] {
            let tick = 0xffff - ((u64::from(msb) << 8) | 0xff);
            let now = tick_after(t0, tick);
            inb(&mut pit, 0x42, now); // the low byte, ignored
            assert_eq!(inb(&mut pit, 0x42, now), msb);
            let now = tick_after(t0, tick + 255);
            assert_eq!(inb(&mut pit, 0x42, now), 0x00);
            assert_eq!(inb(&mut pit, 0x42, now), msb);
            let now = tick_after(t0, tick + 256);
            assert_eq!(inb(&mut pit, 0x42, now), 0xff);
            assert_eq!(inb(&mut pit, 0x42, now), msb - 1);
        }
    }

    #[test]
    fn counter_latch_command_freezes_the_value_until_read() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x34, 0);
        outb(&mut pit, 0x40, 0x00, 0);
        outb(&mut pit, 0x40, 0x10, 0); // 4096
        let now = ns_of_tick(100);
        outb(&mut pit, 0x43, 0x00, now); // latch channel 0
        outb(&mut pit, 0x43, 0x00, ns_of_tick(200)); // ignored: already latched
        assert_eq!(inb(&mut pit, 0x40, ns_of_tick(300)), (3996u16 & 0xff) as u8);
        assert_eq!(inb(&mut pit, 0x40, ns_of_tick(400)), (3996u16 >> 8) as u8);
        // Released: the live count again.
        assert_eq!(inb(&mut pit, 0x40, ns_of_tick(500)), (3596u16 & 0xff) as u8);
        assert_eq!(inb(&mut pit, 0x40, ns_of_tick(500)), (3596u16 >> 8) as u8);
        // Low-byte-only access: one read releases the latch.
        outb(&mut pit, 0x43, 0x54, 0); // channel 1, low byte, mode 2
        outb(&mut pit, 0x41, 18, 0);
        outb(&mut pit, 0x43, 0x40, ns_of_tick(5));
        assert_eq!(inb(&mut pit, 0x41, ns_of_tick(7)), 13);
        assert_eq!(inb(&mut pit, 0x41, ns_of_tick(7)), 11);
        // High-byte-only access: the count is the byte times 256.
        outb(&mut pit, 0x43, 0x60, 0); // channel 1, high byte, mode 0
        outb(&mut pit, 0x41, 0x02, 0);
        assert_eq!(inb(&mut pit, 0x41, ns_of_tick(1)), 0x01);
        assert_eq!(pit.channels[1].count(1), 0x1ff);
    }

    #[test]
    fn read_back_status_and_count() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0xb6, 0); // channel 2, lo/hi, mode 3, binary
                                       // Status before a count: null count, OUT high.
        outb(&mut pit, 0x43, 0xe8, 0); // read-back status of channel 2
        assert_eq!(inb(&mut pit, 0x42, 0), 0xc0 | 0x36);
        outb(&mut pit, 0x42, 0x00, 0);
        outb(&mut pit, 0x42, 0x01, 0); // 256, gate still low
        outb(&mut pit, 0x61, 0x01, 0);
        let now = ns_of_tick(10);
        // Read-back of count and status of channels 0 and 2.
        outb(&mut pit, 0x43, 0xca, now);
        assert_eq!(inb(&mut pit, 0x42, now), 0x80 | 0x36, "status first: OUT high, count loaded");
        assert_eq!(inb(&mut pit, 0x42, ns_of_tick(50)), 236, "then the latched count");
        assert_eq!(inb(&mut pit, 0x42, ns_of_tick(50)), 0);
        // Channel 0 was never programmed: its status shows the power-on
        // mode 0 with lo/hi access, OUT low and a null count.
        assert_eq!(inb(&mut pit, 0x40, now), 0x70);
        assert_eq!(inb(&mut pit, 0x40, now), 0x00);
        assert_eq!(inb(&mut pit, 0x40, now), 0x00);
        outb(&mut pit, 0x43, 0xe2, now); // status only
        assert_eq!(inb(&mut pit, 0x40, now), 0x70);
        // Count only, at the start of the second half period.
        outb(&mut pit, 0x43, 0xd8, ns_of_tick(128));
        assert_eq!(inb(&mut pit, 0x42, now), 0);
        assert_eq!(inb(&mut pit, 0x42, now), 1);
        assert_eq!(pit.metrics().odd_total(), 0);
    }

    #[test]
    fn square_wave_mode_3() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x36, 0);
        outb(&mut pit, 0x40, 5, 0);
        outb(&mut pit, 0x40, 0, 0);
        // Odd count: high for 3 clocks, low for 2; counts from 4 by two.
        let outs: alloc::vec::Vec<bool> = (0..10).map(|tick| pit.irq0_level(ns_of_tick(tick))).collect();
        assert_eq!(outs, [true, true, true, false, false, true, true, true, false, false]);
        let counts: alloc::vec::Vec<u16> = (0..5).map(|tick| pit.channels[0].count(tick)).collect();
        assert_eq!(counts, [4, 2, 0, 4, 2]);
        assert_eq!(pit.take_irq0_edges(ns_of_tick(10)), 2);
        // Even count: a plain square wave.
        outb(&mut pit, 0x43, 0x36, ns_of_tick(10));
        outb(&mut pit, 0x40, 4, ns_of_tick(10));
        outb(&mut pit, 0x40, 0, ns_of_tick(10));
        let outs: alloc::vec::Vec<bool> = (10..18).map(|tick| pit.irq0_level(ns_of_tick(tick))).collect();
        assert_eq!(outs, [true, true, false, false, true, true, false, false]);
        assert_eq!(pit.channels[0].count(11), 2);
        assert_eq!(pit.channels[0].count(12), 4);
    }

    #[test]
    fn a_new_mode_2_count_waits_for_the_end_of_the_period() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x34, 0);
        outb(&mut pit, 0x40, 100, 0);
        outb(&mut pit, 0x40, 0, 0);
        let now = ns_of_tick(130);
        assert_eq!(pit.take_irq0_edges(now), 1);
        outb(&mut pit, 0x40, 10, now);
        outb(&mut pit, 0x40, 0, now);
        outb(&mut pit, 0x43, 0xe2, now);
        assert_eq!(inb(&mut pit, 0x40, now) & 0x40, 0x40, "null count until the period ends");
        assert_eq!(pit.channels[0].count(150), 50);
        assert_eq!(pit.next_event_ns(now), Some(ns_of_tick(200)));
        assert_eq!(pit.channels[0].count(200), 10);
        assert_eq!(pit.channels[0].count(205), 5);
        assert_eq!(pit.next_event_ns(ns_of_tick(200)), Some(ns_of_tick(200)), "the switch is an uncollected edge");
        // The edge at 200 ends the old count, then 210 and 220 under the new.
        assert_eq!(pit.take_irq0_edges(ns_of_tick(225)), 3);
        assert_eq!(pit.next_event_ns(ns_of_tick(225)), Some(ns_of_tick(230)));
        outb(&mut pit, 0x43, 0xe2, ns_of_tick(225));
        assert_eq!(inb(&mut pit, 0x40, ns_of_tick(225)) & 0x40, 0);
    }

    #[test]
    fn hardware_triggered_modes_1_and_5_on_channel_2() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0xb2, 0); // channel 2, lo/hi, mode 1
        outb(&mut pit, 0x42, 50, 0);
        outb(&mut pit, 0x42, 0, 0);
        assert!(pit.channel2_out(ns_of_tick(100)), "waiting for a trigger");
        outb(&mut pit, 0x61, 0x01, ns_of_tick(100));
        assert!(!pit.channel2_out(ns_of_tick(100)));
        assert!(!pit.channel2_out(ns_of_tick(149)));
        assert!(pit.channel2_out(ns_of_tick(150)));
        // Retrigger: low and high again on the gate.
        outb(&mut pit, 0x61, 0x00, ns_of_tick(160));
        outb(&mut pit, 0x61, 0x01, ns_of_tick(170));
        assert!(!pit.channel2_out(ns_of_tick(219)));
        assert!(pit.channel2_out(ns_of_tick(220)));

        outb(&mut pit, 0x43, 0xba, ns_of_tick(300)); // mode 5
        outb(&mut pit, 0x42, 20, ns_of_tick(300));
        outb(&mut pit, 0x42, 0, ns_of_tick(300));
        assert!(pit.channel2_out(ns_of_tick(330)), "the gate is already high: no trigger");
        outb(&mut pit, 0x61, 0x00, ns_of_tick(330));
        outb(&mut pit, 0x61, 0x01, ns_of_tick(340));
        assert!(pit.channel2_out(ns_of_tick(359)));
        assert!(!pit.channel2_out(ns_of_tick(360)));
        assert!(pit.channel2_out(ns_of_tick(361)));
    }

    #[test]
    fn gate_stops_and_restarts_mode_2() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0xb4, 0);
        outb(&mut pit, 0x42, 10, 0);
        outb(&mut pit, 0x42, 0, 0);
        assert_eq!(pit.channels[2].count(5), 10, "gate low: not counting");
        outb(&mut pit, 0x61, 0x01, ns_of_tick(5));
        assert_eq!(pit.channels[2].count(8), 7);
        outb(&mut pit, 0x61, 0x00, ns_of_tick(9));
        assert!(pit.channel2_out(ns_of_tick(9)));
        assert_eq!(pit.channels[2].count(30), 6);
        outb(&mut pit, 0x61, 0x01, ns_of_tick(30));
        assert_eq!(pit.channels[2].count(30), 10, "a rising gate reloads");
    }

    #[test]
    fn bcd_counting() {
        let mut pit = Pit8254::new();
        outb(&mut pit, 0x43, 0x31, 0); // channel 0, lo/hi, mode 0, BCD
        outb(&mut pit, 0x40, 0x00, 0);
        outb(&mut pit, 0x40, 0x10, 0); // 1000 decimal
        assert_eq!(pit.channels[0].count(1), 0x0999);
        assert_eq!(pit.channels[0].count(999), 0x0001);
        assert_eq!(pit.next_event_ns(0), Some(ns_of_tick(1000)));
        assert_eq!(pit.channels[0].count(1001), 0x9999, "wraps through 0 to 9999");
        // A count of 0 is 10000 in BCD.
        outb(&mut pit, 0x43, 0x35, 0); // mode 2, BCD
        outb(&mut pit, 0x40, 0, 0);
        outb(&mut pit, 0x40, 0, 0);
        assert_eq!(pit.next_event_ns(0), Some(ns_of_tick(10_000)));
        assert_eq!(pit.channels[0].count(1), 0x9999);
        assert_eq!(pit.metrics().odd_total(), 0);
        // A digit above 9 is counted.
        outb(&mut pit, 0x40, 0x0a, 0);
        outb(&mut pit, 0x40, 0, 0);
        assert_eq!(pit.metrics().invalid_commands, 1);
    }

    #[test]
    fn odd_accesses_are_counted() {
        let mut pit = Pit8254::new();
        assert_eq!(inb(&mut pit, 0x43, 0), 0xff);
        assert_eq!(pit.metrics().wrong_direction, 1);
        outb(&mut pit, 0x43, 0xc1, 0); // read-back with the reserved bit, no channel
        assert_eq!(pit.metrics().invalid_commands, 1);
        outb(&mut pit, 0x43, 0x34, 0);
        outb(&mut pit, 0x40, 1, 0);
        outb(&mut pit, 0x40, 0, 0); // a count of 1 in mode 2
        assert_eq!(pit.metrics().invalid_commands, 2);
        // A 16-bit write to channel 0 is a byte to it and one to channel 1.
        outb(&mut pit, 0x43, 0x34, 0);
        pit.write(0x40, 2, 0x04a9, 0);
        assert_eq!(pit.next_event_ns(0), None, "channel 0 has only its low byte");
        outb(&mut pit, 0x40, 0x04, 0);
        assert_eq!(pit.next_event_ns(0), Some(ns_of_tick(1193)));
        // Channels 0-2's low bytes, then the write-only control port.
        assert_eq!(pit.read(0x40, 4, 0), 0xff00_00a9);
        assert_eq!(pit.metrics().bad_size, 2);
        assert_eq!(pit.metrics().wrong_direction, 2);
        assert_eq!(pit.metrics().last_odd_port, Some(0x43));
    }

    proptest! {
        /// The rising edges collected for IRQ0 are exactly the low-to-high
        /// transitions of OUT sampled at every clock, whatever the mode,
        /// the count, a count rewritten mid-way, and when they are collected.
        #[test]
        fn collected_edges_match_the_output_clock_by_clock(
            mode in 0u8..6,
            count in 2u16..60,
            rewrite in proptest::option::of((1u64..200, 2u16..60)),
            checkpoints in proptest::collection::vec(1u64..300, 0..10),
        ) {
            let mut pit = Pit8254::new();
            outb(&mut pit, 0x43, 0x30 | (mode << 1), 0);
            outb(&mut pit, 0x40, count as u8, 0);
            outb(&mut pit, 0x40, (count >> 8) as u8, 0);
            let mut level = pit.irq0_level(0);
            let mut sampled = 0;
            let mut collected = pit.take_irq0_edges(0);
            let mut sample = |pit: &Pit8254, now: u64| {
                let high = pit.irq0_level(now);
                sampled += u64::from(high && !level);
                level = high;
            };
            for tick in 1..300 {
                let now = ns_of_tick(tick);
                sample(&pit, now);
                if let Some((at, new_count)) = rewrite {
                    if at == tick {
                        outb(&mut pit, 0x40, new_count as u8, now);
                        outb(&mut pit, 0x40, (new_count >> 8) as u8, now);
                        sample(&pit, now);
                    }
                }
                if checkpoints.contains(&tick) {
                    collected += pit.take_irq0_edges(now);
                }
            }
            collected += pit.take_irq0_edges(ns_of_tick(299));
            prop_assert_eq!(collected, sampled);
        }
    }
}
