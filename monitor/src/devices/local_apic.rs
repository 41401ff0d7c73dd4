//! A vCPU's local APIC: the xAPIC register page, the x2APIC MSRs and the
//! APIC timer (Intel SDM vol. 3A, chapters 10 and 11 "APIC").
//!
//! The guest reaches the registers as a 4-KiB MMIO page at 0xFEE00000
//! (xAPIC mode: 32-bit registers on 16-byte boundaries) or, in x2APIC mode,
//! as MSRs 0x800-0x8FF (register offset / 16). Which one answers follows
//! the mode that IA32_APIC_BASE selects ([`LocalApic::set_mode`]).
//!
//! Interrupts arrive as [`LocalApic::accept`] (fixed and lowest-priority
//! messages from IPIs and the IOAPIC, and the APIC's own local sources),
//! wait in the IRR, and become deliverable when their priority class is
//! above the processor priority (PPR, from TPR and the highest in-service
//! vector). [`LocalApic::acknowledge`] moves one from IRR to ISR as the
//! CPU's interrupt acknowledge does; the guest's EOI retires it. An EOI of
//! a level-triggered vector (its TMR bit) is reported to the caller, which
//! broadcasts it to the IOAPIC.
//!
//! What the APIC sends leaves as data: a write of the ICR gives an
//! [`ApicEffect::Ipi`] for the platform to route to other vCPUs, since one
//! APIC cannot reach another.
//!
//! The timer counts at [`LocalApic::new`]'s `timer_khz` divided by the
//! divide configuration, in one-shot, periodic or TSC-deadline mode. Like
//! the other devices it reads no clock: every call takes the guest's time
//! in nanoseconds, and TSC-deadline values are converted with the guest's
//! TSC rate. [`LocalApic::next_deadline`] tells the monitor when to ask the
//! shim for an exit.
//!
//! After [`LocalApic::new`] the BSP is in the state a PC BIOS leaves it in
//! (APIC software-enabled, LINT0 as ExtINT and LINT1 as NMI: "virtual wire
//! mode", MP spec 1.4 section 3.6.2.2), so the 8259's INTR reaches the CPU
//! through LINT0 and a guest that never touches its APIC keeps working.
//! APs start in the power-up state, waiting for INIT and SIPI.

use super::DeviceMetrics;

/// The xAPIC page's guest-physical address (IA32_APIC_BASE's default).
pub const XAPIC_BASE: u64 = 0xfee0_0000;
pub const XAPIC_PAGE_SIZE: u64 = 0x1000;
/// x2APIC MSRs: MSR 0x800 + register offset / 16.
pub const X2APIC_MSR_FIRST: u32 = 0x800;
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
pub const IA32_TSC_DEADLINE: u32 = 0x6e0;

// Register offsets in the xAPIC page.
const ID: u32 = 0x020; // local APIC ID
const VERSION: u32 = 0x030; // version and max LVT entry (read-only)
const TPR: u32 = 0x080; // task priority
const APR: u32 = 0x090; // arbitration priority (read-only)
const PPR: u32 = 0x0a0; // processor priority (read-only)
const EOI: u32 = 0x0b0; // end of interrupt (write-only)
const RRD: u32 = 0x0c0; // remote read (read-only, unused since the P6)
const LDR: u32 = 0x0d0; // logical destination
const DFR: u32 = 0x0e0; // destination format (xAPIC only)
const SVR: u32 = 0x0f0; // spurious-interrupt vector, software enable
const ISR: u32 = 0x100; // in-service, 8 registers (read-only)
const TMR: u32 = 0x180; // trigger mode, 8 registers (read-only)
const IRR: u32 = 0x200; // interrupt request, 8 registers (read-only)
const ESR: u32 = 0x280; // error status
const ICR_LOW: u32 = 0x300; // interrupt command, bits 31:0 (x2APIC: all 64)
const ICR_HIGH: u32 = 0x310; // interrupt command, bits 63:32 (xAPIC only)
const LVT_TIMER: u32 = 0x320;
const LVT_ERROR: u32 = 0x370;
const TIMER_INITIAL: u32 = 0x380; // initial count
const TIMER_CURRENT: u32 = 0x390; // current count (read-only)
const TIMER_DIVIDE: u32 = 0x3e0; // divide configuration
const SELF_IPI: u32 = 0x3f0; // x2APIC only, write-only

/// Version 0x14 (an integrated APIC, as every CPU since the Pentium 4),
/// max LVT entry 5: timer, thermal, performance counter, LINT0, LINT1,
/// error. No CMCI (the machine-check banks are hidden), no EOI-broadcast
/// suppression.
const VERSION_VALUE: u32 = 0x14 | (MAX_LVT << 16);
const MAX_LVT: u32 = 5;

// LVT entry fields.
const LVT_MASKED: u32 = 1 << 16;
const LVT_DELIVERY_STATUS: u32 = 1 << 12; // read-only: send pending
const LVT_REMOTE_IRR: u32 = 1 << 14; // read-only: level LINT accepted
const LVT_LEVEL: u32 = 1 << 15; // LINT trigger mode
const TIMER_MODE_SHIFT: u32 = 17;
/// The writable bits of each LVT entry, by index (timer, thermal,
/// performance counter, LINT0, LINT1, error).
const LVT_WRITABLE: [u32; 6] = [0x700ff, 0x107ff, 0x107ff, 0x1a7ff, 0x1a7ff, 0x100ff];
const LVT_RESET: u32 = LVT_MASKED;
const LVT_INDEX_TIMER: usize = 0;
const LVT_INDEX_LINT0: usize = 3;
const LVT_INDEX_LINT1: usize = 4;
const LVT_INDEX_ERROR: usize = 5;

// SVR fields.
const SVR_ENABLED: u32 = 1 << 8; // APIC software enable
const SVR_WRITABLE: u32 = 0x3ff; // vector, enable, focus-check disable
const SVR_RESET: u32 = 0xff;

// DFR: only the model (bits 31:28) is writable; the rest reads as ones.
const DFR_MODEL_MASK: u32 = 0xf000_0000;
const DFR_FLAT: u32 = 0xf;

// ESR bits (SDM 10.5.3).
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

// ICR fields.
const ICR_DELIVERY_SHIFT: u32 = 8;
const ICR_LOGICAL: u32 = 1 << 11;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
const ICR_LOW_WRITABLE: u32 = 0x000c_cfff; // vector, mode, dest mode, level, trigger, shorthand

/// The destination "all APICs" in physical mode and in the logical models.
const XAPIC_BROADCAST: u32 = 0xff;
const X2APIC_BROADCAST: u32 = 0xffff_ffff;
/// Vectors 0-15 are reserved for exceptions: sending or receiving one is an
/// error (ESR bits 5 and 6).
const FIRST_VALID_VECTOR: u8 = 16;
/// The shortest period a periodic timer may have. A guest asking for a
/// shorter one (an initial count of 1 at a divisor of 1 is 1 ns) would
/// make its monitor ask for a VM exit every few nanoseconds: it gets this
/// instead, as KVM does, and the clamp is counted.
pub const MIN_PERIOD_NS: u64 = 100_000;

/// How IA32_APIC_BASE (bits 11 and 10) sets the APIC up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMode {
    /// Globally disabled: no registers, LINT0 is the CPU's INTR pin.
    Disabled,
    /// The MMIO register page.
    XApic,
    /// The MSRs 0x800-0x8FF.
    X2Apic,
}

/// The timer's mode, LVT timer bits 18:17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

/// How an interrupt message is delivered (ICR and redirection entry bits
/// 10:8, LVT bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    StartUp,
    ExtInt,
}

impl DeliveryMode {
    /// The mode of a 3-bit field; `None` for the reserved encodings.
    pub fn from_bits(bits: u32) -> Option<Self> {
        Some(match bits & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::StartUp,
            7 => Self::ExtInt,
            _ => return None,
        })
    }
}

/// Whom an interrupt message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// An APIC ID (all ones: every APIC).
    Physical(u32),
    /// A logical destination, matched against each APIC's LDR and DFR.
    Logical(u32),
    /// The ICR's destination shorthands.
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An interrupt message on the APIC bus: an IPI, or an IOAPIC redirection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptMessage {
    pub vector: u8,
    pub delivery: DeliveryMode,
    pub destination: Destination,
    pub level_triggered: bool,
    /// The sender's APIC ID, for the shorthands; `None` for the IOAPIC.
    pub source: Option<u32>,
}

/// What a register write asks of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicEffect {
    None,
    /// Route this message to the APICs it is for (this one included, when
    /// the destination says so).
    Ipi(InterruptMessage),
    /// The guest ended a level-triggered interrupt: the IOAPIC clears the
    /// Remote IRR of the entries with this vector.
    LevelEoi(u8),
}

/// Why an x2APIC MSR access faults (the monitor injects #GP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X2apicFault {
    /// The APIC is not in x2APIC mode.
    NotX2apic,
    /// No register at this MSR (e.g. 0x831, DFR), or the wrong direction.
    NoSuchRegister,
    /// A value with reserved bits set where the SDM says #GP.
    ReservedBits,
}

/// 256 one-bit flags by vector, kept as the 8 APIC registers show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VectorSet([u32; 8]);

impl VectorSet {
    pub fn set(&mut self, vector: u8) {
        self.0[usize::from(vector / 32)] |= 1 << (vector % 32);
    }

    pub fn clear(&mut self, vector: u8) {
        self.0[usize::from(vector / 32)] &= !(1 << (vector % 32));
    }

    pub fn contains(&self, vector: u8) -> bool {
        self.0[usize::from(vector / 32)] & (1 << (vector % 32)) != 0
    }

    pub fn highest(&self) -> Option<u8> {
        (0..8).rev().find(|&i| self.0[i] != 0).map(|i| (i * 32 + 31 - self.0[i].leading_zeros() as usize) as u8)
    }

    /// The 32-bit register `index` (0-7) of the set.
    pub fn word(&self, index: usize) -> u32 {
        self.0[index]
    }
}

/// A running one-shot or periodic countdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Countdown {
    /// When the current period began.
    start_ns: u64,
    /// When it ends (the interrupt).
    deadline_ns: u64,
}

/// One vCPU's local APIC.
#[derive(Debug, Clone)]
pub struct LocalApic {
    mode: ApicMode,
    id: u32,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: VectorSet,
    tmr: VectorSet,
    irr: VectorSet,
    /// What ESR reads: the errors latched by the last ESR write.
    esr: u32,
    /// Errors since the last ESR write.
    esr_pending: u32,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; 6],
    timer_initial: u32,
    timer_divide: u32,
    countdown: Option<Countdown>,
    /// IA32_TSC_DEADLINE; 0 is disarmed.
    tsc_deadline: u64,
    tsc_khz: u64,
    timer_khz: u64,
    /// An NMI (LINT1, or an NMI message) waits for the vCPU.
    nmi_pending: bool,
    /// An INIT arrived: the vCPU resets and waits for a SIPI.
    init_pending: bool,
    waiting_for_sipi: bool,
    sipi_vector: Option<u8>,
    metrics: DeviceMetrics,
}

impl LocalApic {
    /// The APIC of the vCPU with APIC ID `id`; the BSP starts as the BIOS
    /// leaves it (see the module documentation), an AP as at power-up.
    /// `tsc_khz` is the guest's TSC rate, `timer_khz` the timer's input
    /// clock before the divider (what CPUID 0x15 reports as the crystal).
    pub fn new(id: u32, bsp: bool, tsc_khz: u64, timer_khz: u64) -> Self {
        let mut apic = Self {
            mode: ApicMode::XApic,
            id,
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            svr: SVR_RESET,
            isr: VectorSet::default(),
            tmr: VectorSet::default(),
            irr: VectorSet::default(),
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_RESET; 6],
            timer_initial: 0,
            timer_divide: 0,
            countdown: None,
            tsc_deadline: 0,
            tsc_khz: tsc_khz.max(1),
            timer_khz: timer_khz.max(1),
            nmi_pending: false,
            init_pending: false,
            waiting_for_sipi: !bsp,
            sipi_vector: None,
            metrics: DeviceMetrics::default(),
        };
        if bsp {
            apic.svr = SVR_ENABLED | SVR_RESET;
            apic.lvt[LVT_INDEX_LINT0] = (7 << 8) | LVT_LEVEL; // ExtINT
            apic.lvt[LVT_INDEX_LINT1] = (4 << 8) | LVT_LEVEL; // NMI
        }
        apic
    }

    pub fn mode(&self) -> ApicMode {
        self.mode
    }

    /// The APIC ID (xAPIC: the 8 bits of ID[31:24]).
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn metrics(&self) -> &DeviceMetrics {
        &self.metrics
    }

    pub fn software_enabled(&self) -> bool {
        self.mode != ApicMode::Disabled && self.svr & SVR_ENABLED != 0
    }

    pub fn irr(&self) -> &VectorSet {
        &self.irr
    }

    pub fn isr(&self) -> &VectorSet {
        &self.isr
    }

    pub fn tmr(&self) -> &VectorSet {
        &self.tmr
    }

    pub fn timer_mode(&self) -> TimerMode {
        match (self.lvt[LVT_INDEX_TIMER] >> TIMER_MODE_SHIFT) & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            // 3 is reserved; the timer then behaves as one-shot.
            _ => TimerMode::OneShot,
        }
    }

    /// IA32_APIC_BASE's enable bits changed. Leaving the disabled state
    /// finds the APIC as at power-up (SDM 10.4.3), keeping its ID.
    pub fn set_mode(&mut self, mode: ApicMode) {
        if mode == self.mode {
            return;
        }
        if self.mode == ApicMode::Disabled || mode == ApicMode::Disabled {
            self.reset_registers();
        }
        self.mode = mode;
    }

    /// The power-up state of every register but the ID.
    fn reset_registers(&mut self) {
        let keep = (self.id, self.tsc_khz, self.timer_khz, self.metrics, self.mode);
        *self = Self::new(keep.0, false, keep.1, keep.2);
        self.waiting_for_sipi = false;
        self.metrics = keep.3;
        self.mode = keep.4;
    }

    // --- Priorities and acceptance (SDM 10.8.3) ---

    /// PPR: the TPR, or the class of the highest in-service vector if that
    /// is higher.
    pub fn ppr(&self) -> u32 {
        let isrv = self.isr.highest().map_or(0, u32::from);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr & 0xff
        } else {
            isrv & 0xf0
        }
    }

    /// Accepts a fixed or lowest-priority interrupt into the IRR. The TMR
    /// bit records the trigger mode, for the EOI.
    pub fn accept(&mut self, vector: u8, level_triggered: bool) {
        if vector < FIRST_VALID_VECTOR {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        if !self.software_enabled() {
            // A software-disabled APIC accepts no fixed interrupts.
            self.metrics.spurious_interrupts += 1;
            return;
        }
        self.irr.set(vector);
        if level_triggered {
            self.tmr.set(vector);
        } else {
            self.tmr.clear(vector);
        }
    }

    /// The vector the APIC presents to the CPU now: the highest requested
    /// one whose priority class is above the PPR's.
    pub fn pending_vector(&self) -> Option<u8> {
        if self.mode == ApicMode::Disabled {
            return None;
        }
        let vector = self.irr.highest()?;
        (u32::from(vector) >> 4 > self.ppr() >> 4).then_some(vector)
    }

    /// The CPU's interrupt acknowledge: the pending vector moves from IRR to
    /// ISR. With nothing pending (the TPR rose in between) the CPU gets the
    /// spurious vector, which needs no EOI.
    pub fn acknowledge(&mut self) -> u8 {
        match self.pending_vector() {
            Some(vector) => {
                self.irr.clear(vector);
                self.isr.set(vector);
                vector
            }
            None => {
                self.metrics.spurious_interrupts += 1;
                self.svr as u8
            }
        }
    }

    /// An EOI: the highest in-service vector is done.
    fn end_of_interrupt(&mut self) -> ApicEffect {
        let Some(vector) = self.isr.highest() else {
            self.metrics.spurious_interrupts += 1;
            return ApicEffect::None;
        };
        self.isr.clear(vector);
        if self.tmr.contains(vector) {
            self.tmr.clear(vector);
            ApicEffect::LevelEoi(vector)
        } else {
            ApicEffect::None
        }
    }

    /// Records an error and raises the LVT error interrupt.
    fn error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        self.metrics.invalid_commands += 1;
        self.local_interrupt(LVT_INDEX_ERROR);
    }

    /// A local source fires through its LVT entry.
    fn local_interrupt(&mut self, index: usize) {
        let entry = self.lvt[index];
        if entry & LVT_MASKED != 0 || !self.software_enabled() {
            return;
        }
        let vector = entry as u8;
        match DeliveryMode::from_bits(entry >> 8) {
            Some(DeliveryMode::Fixed) if vector >= FIRST_VALID_VECTOR => {
                self.irr.set(vector);
                self.tmr.clear(vector);
            }
            Some(DeliveryMode::Fixed) => {
                // Not through `error`: an illegal error vector would loop.
                self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
            }
            Some(DeliveryMode::Nmi) => self.nmi_pending = true,
            _ => self.metrics.unsupported += 1,
        }
    }

    /// Whether the 8259's INTR reaches the CPU: the APIC is globally
    /// disabled (LINT0 is then the INTR pin itself), or LINT0 is an
    /// unmasked ExtINT entry (virtual wire mode).
    pub fn accepts_pic_interrupts(&self) -> bool {
        let lint0 = self.lvt[LVT_INDEX_LINT0];
        self.mode == ApicMode::Disabled
            || (lint0 & LVT_MASKED == 0 && DeliveryMode::from_bits(lint0 >> 8) == Some(DeliveryMode::ExtInt))
    }

    /// Raises LINT1 (an NMI button, on a PC): an NMI if so programmed.
    pub fn raise_lint1(&mut self) {
        if self.mode == ApicMode::Disabled {
            self.nmi_pending = true;
        } else {
            self.local_interrupt(LVT_INDEX_LINT1);
        }
    }

    /// Delivers an NMI message.
    pub fn deliver_nmi(&mut self) {
        self.nmi_pending = true;
    }

    /// An INIT message: the APIC resets (keeping its ID) and its vCPU
    /// waits for a SIPI.
    pub fn deliver_init(&mut self) {
        self.reset_registers();
        self.init_pending = true;
        self.waiting_for_sipi = true;
        self.sipi_vector = None;
    }

    /// A start-up message: only a vCPU waiting after INIT takes it, once.
    pub fn deliver_sipi(&mut self, vector: u8) {
        if self.waiting_for_sipi {
            self.waiting_for_sipi = false;
            self.sipi_vector = Some(vector);
        } else {
            self.metrics.spurious_interrupts += 1;
        }
    }

    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi_pending)
    }

    pub fn take_init(&mut self) -> bool {
        core::mem::take(&mut self.init_pending)
    }

    /// The vector of a SIPI the vCPU should start at (CS = vector << 8).
    pub fn take_sipi(&mut self) -> Option<u8> {
        self.sipi_vector.take()
    }

    pub fn nmi_pending(&self) -> bool {
        self.nmi_pending
    }

    pub fn init_pending(&self) -> bool {
        self.init_pending
    }

    /// Whether a SIPI waits to start the vCPU.
    pub fn sipi_pending(&self) -> bool {
        self.sipi_vector.is_some()
    }

    /// Whether a message for `destination` from `source` is for this APIC
    /// (SDM 10.6.2). Lowest-priority arbitration among several matches is
    /// the platform's.
    pub fn matches(&self, destination: Destination, source: Option<u32>) -> bool {
        if self.mode == ApicMode::Disabled {
            return false;
        }
        let x2apic = self.mode == ApicMode::X2Apic;
        match destination {
            Destination::SelfOnly => source == Some(self.id),
            Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => source != Some(self.id),
            Destination::Physical(id) if x2apic => id == X2APIC_BROADCAST || id == self.id,
            Destination::Physical(id) => id & 0xff == XAPIC_BROADCAST || id & 0xff == self.id & 0xff,
            Destination::Logical(mda) if x2apic => {
                let ldr = self.x2apic_ldr();
                mda == X2APIC_BROADCAST || (mda >> 16 == ldr >> 16 && mda & ldr & 0xffff != 0)
            }
            Destination::Logical(mda) => {
                let mda = mda & 0xff;
                let logical_id = self.ldr >> 24;
                if mda == XAPIC_BROADCAST {
                    true
                } else if self.dfr >> 28 == DFR_FLAT {
                    mda & logical_id != 0
                } else {
                    // Cluster model: cluster in the high nibble, members in the low.
                    mda >> 4 == logical_id >> 4 && mda & logical_id & 0xf != 0
                }
            }
        }
    }

    /// The x2APIC LDR, derived from the ID (SDM 10.12.10.2).
    fn x2apic_ldr(&self) -> u32 {
        ((self.id >> 4) << 16) | (1 << (self.id & 0xf))
    }

    // --- The timer (SDM 10.5.4) ---

    fn divisor(&self) -> u64 {
        // Bits 0, 1 and 3; 0b111 divides by 1, n by 2^(n+1).
        let code = ((self.timer_divide & 8) >> 1) | (self.timer_divide & 3);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    fn ns_of_ticks(&self, ticks: u64) -> u64 {
        let ns = (u128::from(ticks) * 1_000_000).div_ceil(u128::from(self.timer_khz));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    fn ticks_of_ns(&self, ns: u64) -> u64 {
        u64::try_from(u128::from(ns) * u128::from(self.timer_khz) / 1_000_000).unwrap_or(u64::MAX)
    }

    /// The guest time at which its TSC reaches `tsc` (rounded up: the
    /// interrupt never comes before the deadline).
    fn ns_of_tsc(&self, tsc: u64) -> u64 {
        u64::try_from((u128::from(tsc) * 1_000_000).div_ceil(u128::from(self.tsc_khz))).unwrap_or(u64::MAX)
    }

    /// One period of the one-shot or periodic countdown.
    fn period_ns(&mut self) -> u64 {
        let ns = self.ns_of_ticks(u64::from(self.timer_initial) * self.divisor());
        if self.timer_mode() == TimerMode::Periodic && ns < MIN_PERIOD_NS {
            self.metrics.unsupported += 1;
            return MIN_PERIOD_NS;
        }
        ns.max(1)
    }

    fn start_countdown(&mut self, now_ns: u64) {
        self.countdown = if self.timer_initial == 0 || self.timer_mode() == TimerMode::TscDeadline {
            None
        } else {
            let period = self.period_ns();
            Some(Countdown { start_ns: now_ns, deadline_ns: now_ns.saturating_add(period) })
        };
    }

    /// The current-count register.
    fn current_count(&self, now_ns: u64) -> u32 {
        let Some(countdown) = self.countdown else { return 0 };
        if now_ns >= countdown.deadline_ns {
            // Expired but not yet collected by `advance`.
            return if self.timer_mode() == TimerMode::Periodic { self.timer_initial } else { 0 };
        }
        let elapsed = self.ticks_of_ns(now_ns.saturating_sub(countdown.start_ns)) / self.divisor();
        let remaining = u64::from(self.timer_initial).saturating_sub(elapsed);
        remaining.max(1) as u32
    }

    /// Lets the timer catch up with `now_ns`: an expired countdown or TSC
    /// deadline requests its LVT interrupt (unless masked; a masked timer
    /// still counts). Periods that passed unseen are merged into one
    /// interrupt and counted.
    pub fn advance(&mut self, now_ns: u64) {
        if self.tsc_deadline != 0 && self.timer_mode() == TimerMode::TscDeadline {
            if now_ns >= self.ns_of_tsc(self.tsc_deadline) {
                self.tsc_deadline = 0;
                self.local_interrupt(LVT_INDEX_TIMER);
            }
            return;
        }
        let Some(countdown) = self.countdown else { return };
        if now_ns < countdown.deadline_ns {
            return;
        }
        self.local_interrupt(LVT_INDEX_TIMER);
        if self.timer_mode() == TimerMode::Periodic {
            let period = countdown.deadline_ns - countdown.start_ns;
            let missed = (now_ns - countdown.deadline_ns) / period;
            self.metrics.coalesced_ticks += missed;
            let start_ns = countdown.deadline_ns + missed * period;
            self.countdown = Some(Countdown { start_ns, deadline_ns: start_ns + period });
        } else {
            self.countdown = None;
        }
    }

    /// When the timer next raises an interrupt, if it is armed and
    /// unmasked: the time to ask the shim for an exit at.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.lvt[LVT_INDEX_TIMER] & LVT_MASKED != 0 || !self.software_enabled() {
            return None;
        }
        match self.timer_mode() {
            TimerMode::TscDeadline => (self.tsc_deadline != 0).then(|| self.ns_of_tsc(self.tsc_deadline)),
            _ => self.countdown.map(|countdown| countdown.deadline_ns),
        }
    }

    /// IA32_TSC_DEADLINE (MSR 0x6E0): reads 0 outside TSC-deadline mode
    /// and once the deadline passed.
    pub fn read_tsc_deadline(&self) -> u64 {
        if self.timer_mode() == TimerMode::TscDeadline {
            self.tsc_deadline
        } else {
            0
        }
    }

    /// Writes outside TSC-deadline mode are ignored (SDM 10.5.4.1).
    pub fn write_tsc_deadline(&mut self, value: u64, now_ns: u64) {
        if self.timer_mode() == TimerMode::TscDeadline {
            self.tsc_deadline = value;
            self.advance(now_ns);
        }
    }

    // --- Register access ---

    /// A guest read of the xAPIC page at `offset`. Registers are 32 bits
    /// wide on 16-byte boundaries; a narrower read gets the bytes of the
    /// register it falls in (the SDM leaves it undefined; it is counted).
    pub fn mmio_read(&mut self, offset: u64, size: u8, now_ns: u64) -> u32 {
        self.metrics.reads += 1;
        let offset = (offset & 0xfff) as u32;
        if self.mode != ApicMode::XApic {
            // In x2APIC mode the page is gone; with the APIC disabled it
            // never was.
            self.metrics.note_unsupported(offset as u16);
            return 0;
        }
        if size != 4 || offset & 0xf != 0 {
            self.metrics.note_bad_size(offset as u16);
        }
        self.advance(now_ns);
        let register = offset & !0xf;
        let value = match self.read_register(register, now_ns) {
            Some(value) => value,
            None => {
                self.metrics.note_wrong_direction(offset as u16);
                if !self.defined_register(register) {
                    self.error(ESR_ILLEGAL_REGISTER);
                }
                0
            }
        };
        let shift = 8 * (offset & 3);
        match size {
            1 => (value >> shift) & 0xff,
            2 => (value >> shift) & 0xffff,
            _ => value >> shift,
        }
    }

    /// A guest write of the xAPIC page. Only aligned 32-bit writes reach a
    /// register (others are counted and dropped, as the SDM leaves them
    /// undefined).
    pub fn mmio_write(&mut self, offset: u64, size: u8, value: u32, now_ns: u64) -> ApicEffect {
        self.metrics.writes += 1;
        let offset = (offset & 0xfff) as u32;
        if self.mode != ApicMode::XApic {
            self.metrics.note_unsupported(offset as u16);
            return ApicEffect::None;
        }
        if size != 4 || offset & 0xf != 0 {
            self.metrics.note_bad_size(offset as u16);
            return ApicEffect::None;
        }
        self.advance(now_ns);
        match self.write_register(offset, u64::from(value), now_ns) {
            Ok(effect) => effect,
            Err(_) => {
                self.metrics.note_wrong_direction(offset as u16);
                if !self.defined_register(offset) {
                    self.error(ESR_ILLEGAL_REGISTER);
                }
                ApicEffect::None
            }
        }
    }

    /// RDMSR of an x2APIC register.
    pub fn msr_read(&mut self, msr: u32, now_ns: u64) -> Result<u64, X2apicFault> {
        self.metrics.reads += 1;
        let register = self.x2apic_register(msr)?;
        self.advance(now_ns);
        let value = match register {
            ICR_LOW => Some(u64::from(self.icr_low) | u64::from(self.icr_high) << 32),
            DFR | ICR_HIGH | EOI | SELF_IPI => None,
            _ => self.read_register(register, now_ns).map(u64::from),
        };
        value.ok_or_else(|| {
            self.metrics.note_wrong_direction(register as u16);
            X2apicFault::NoSuchRegister
        })
    }

    /// WRMSR of an x2APIC register.
    pub fn msr_write(&mut self, msr: u32, value: u64, now_ns: u64) -> Result<ApicEffect, X2apicFault> {
        self.metrics.writes += 1;
        let register = self.x2apic_register(msr)?;
        self.advance(now_ns);
        // Only the ICR is 64 bits wide; EOI and SELF IPI take only zeros
        // and a vector.
        let reserved = match register {
            ICR_LOW => !(u64::from(ICR_LOW_WRITABLE) | 0xffff_ffff_0000_0000),
            EOI => u64::MAX,
            SELF_IPI => !0xff,
            _ => 0xffff_ffff_0000_0000,
        };
        if value & reserved != 0 {
            self.metrics.note_invalid_command(register as u16);
            return Err(X2apicFault::ReservedBits);
        }
        let result = match register {
            DFR | ICR_HIGH | ID | LDR => Err(X2apicFault::NoSuchRegister),
            SELF_IPI => Ok(self.send(u32::from(value as u8) | (1 << ICR_SHORTHAND_SHIFT), 0)),
            ICR_LOW => {
                self.icr_high = (value >> 32) as u32;
                Ok(self.send(value as u32, self.icr_high))
            }
            _ => self.write_register(register, value, now_ns).map_err(|_| X2apicFault::NoSuchRegister),
        };
        if result.is_err() {
            self.metrics.note_wrong_direction(register as u16);
        }
        result
    }

    /// The register offset of an x2APIC MSR.
    fn x2apic_register(&mut self, msr: u32) -> Result<u32, X2apicFault> {
        if self.mode != ApicMode::X2Apic {
            self.metrics.note_unsupported(msr as u16);
            return Err(X2apicFault::NotX2apic);
        }
        if !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
            return Err(X2apicFault::NoSuchRegister);
        }
        Ok((msr - X2APIC_MSR_FIRST) << 4)
    }

    /// Whether `register` (16-byte aligned) is an APIC register at all.
    fn defined_register(&self, register: u32) -> bool {
        matches!(
            register,
            ID | VERSION
                | TPR
                | APR
                | PPR
                | EOI
                | RRD
                | LDR
                | DFR
                | SVR
                | ESR
                | ICR_LOW
                | ICR_HIGH
                | TIMER_INITIAL
                | TIMER_CURRENT
                | TIMER_DIVIDE
        ) || (ISR..IRR + 0x80).contains(&register)
            || (LVT_TIMER..=LVT_ERROR).contains(&register)
            || (register == SELF_IPI && self.mode == ApicMode::X2Apic)
    }

    /// The register at a 16-byte aligned offset; `None` for write-only and
    /// undefined ones.
    fn read_register(&self, register: u32, now_ns: u64) -> Option<u32> {
        let x2apic = self.mode == ApicMode::X2Apic;
        Some(match register {
            ID if x2apic => self.id,
            ID => self.id << 24,
            VERSION => VERSION_VALUE,
            TPR => self.tpr,
            // Arbitration priority: only meaningful on the P6 bus.
            APR => 0,
            PPR => self.ppr(),
            LDR if x2apic => self.x2apic_ldr(),
            LDR => self.ldr,
            DFR => self.dfr,
            SVR => self.svr,
            ESR => self.esr,
            ICR_LOW => self.icr_low,
            ICR_HIGH => self.icr_high,
            TIMER_INITIAL => self.timer_initial,
            TIMER_CURRENT => self.current_count(now_ns),
            TIMER_DIVIDE => self.timer_divide,
            r if (ISR..TMR).contains(&r) => self.isr.word(((r - ISR) >> 4) as usize),
            r if (TMR..IRR).contains(&r) => self.tmr.word(((r - TMR) >> 4) as usize),
            r if (IRR..IRR + 0x80).contains(&r) => self.irr.word(((r - IRR) >> 4) as usize),
            r if (LVT_TIMER..=LVT_ERROR).contains(&r) => self.lvt[((r - LVT_TIMER) >> 4) as usize],
            _ => return None,
        })
    }

    /// Writes a register; `Err` for read-only and undefined ones.
    fn write_register(&mut self, register: u32, value: u64, now_ns: u64) -> Result<ApicEffect, ()> {
        let value32 = value as u32;
        match register {
            ID => self.id = value32 >> 24,
            TPR => self.tpr = value32 & 0xff,
            EOI => return Ok(self.end_of_interrupt()),
            LDR => self.ldr = value32 & 0xff00_0000,
            DFR => self.dfr = (value32 & DFR_MODEL_MASK) | !DFR_MODEL_MASK,
            SVR => {
                self.svr = value32 & SVR_WRITABLE;
                if self.svr & SVR_ENABLED == 0 {
                    // Software disable masks every LVT entry (SDM 10.4.7.2).
                    for entry in &mut self.lvt {
                        *entry |= LVT_MASKED;
                    }
                }
            }
            ESR => {
                // A write latches the errors since the last one into ESR.
                self.esr = core::mem::take(&mut self.esr_pending);
            }
            ICR_LOW => return Ok(self.send(value32, self.icr_high)),
            ICR_HIGH => self.icr_high = value32 & 0xff00_0000,
            r if (LVT_TIMER..=LVT_ERROR).contains(&r) => self.write_lvt(((r - LVT_TIMER) >> 4) as usize, value32),
            TIMER_INITIAL => {
                if self.timer_mode() != TimerMode::TscDeadline {
                    self.timer_initial = value32;
                    self.start_countdown(now_ns);
                }
            }
            TIMER_DIVIDE => {
                let remaining = self.current_count(now_ns);
                self.timer_divide = value32 & 0b1011;
                if let (Some(_), Some(period)) = (self.countdown, (remaining > 0).then(|| self.period_ns())) {
                    // The count goes on at the new rate from where it is.
                    let left = self.ns_of_ticks(u64::from(remaining) * self.divisor());
                    let deadline_ns = now_ns.saturating_add(left);
                    self.countdown = Some(Countdown { start_ns: deadline_ns.saturating_sub(period), deadline_ns });
                }
            }
            _ => return Err(()),
        }
        Ok(ApicEffect::None)
    }

    fn write_lvt(&mut self, index: usize, value: u32) {
        let old = self.lvt[index];
        let read_only = old & (LVT_DELIVERY_STATUS | LVT_REMOTE_IRR);
        let mut entry = (value & LVT_WRITABLE[index]) | read_only;
        if self.svr & SVR_ENABLED == 0 {
            entry |= LVT_MASKED;
        }
        self.lvt[index] = entry;
        if index == LVT_INDEX_TIMER && (old ^ entry) >> TIMER_MODE_SHIFT & 3 != 0 {
            // A mode change disarms the timer (SDM 10.5.4.1).
            self.countdown = None;
            self.tsc_deadline = 0;
            self.timer_initial = 0;
        }
    }

    /// A write of ICR[31:0] sends an IPI (SDM 10.6.1).
    fn send(&mut self, low: u32, high: u32) -> ApicEffect {
        self.icr_low = low & ICR_LOW_WRITABLE;
        let vector = low as u8;
        let Some(delivery) = DeliveryMode::from_bits(low >> ICR_DELIVERY_SHIFT) else {
            self.metrics.note_invalid_command(ICR_LOW as u16);
            return ApicEffect::None;
        };
        let level_triggered = low & ICR_LEVEL != 0;
        if delivery == DeliveryMode::Init && level_triggered && low & ICR_ASSERT == 0 {
            // INIT level de-assert: only the 82489DX used it; integrated
            // APICs ignore it, and Linux still sends it.
            return ApicEffect::None;
        }
        let destination = match (low >> ICR_SHORTHAND_SHIFT) & 3 {
            1 => Destination::SelfOnly,
            2 => Destination::AllIncludingSelf,
            3 => Destination::AllExcludingSelf,
            _ => {
                let id = if self.mode == ApicMode::X2Apic { high } else { high >> 24 };
                if low & ICR_LOGICAL != 0 {
                    Destination::Logical(id)
                } else {
                    Destination::Physical(id)
                }
            }
        };
        match delivery {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority if vector < FIRST_VALID_VECTOR => {
                self.error(ESR_SEND_ILLEGAL_VECTOR);
                return ApicEffect::None;
            }
            DeliveryMode::Smi | DeliveryMode::ExtInt => {
                self.metrics.note_unsupported(ICR_LOW as u16);
                return ApicEffect::None;
            }
            _ => {}
        }
        if destination == Destination::SelfOnly && delivery != DeliveryMode::Fixed {
            // The self shorthand is for fixed interrupts only.
            self.metrics.note_invalid_command(ICR_LOW as u16);
            return ApicEffect::None;
        }
        ApicEffect::Ipi(InterruptMessage {
            vector,
            delivery,
            destination,
            // Only fixed-mode IPIs may be level-triggered; INIT's level bit
            // is its assert flag.
            level_triggered: level_triggered && delivery == DeliveryMode::Fixed,
            source: Some(self.id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TSC at 2 GHz; the timer at 1 GHz as the CPUID policy reports.
    const TSC_KHZ: u64 = 2_000_000;
    const TIMER_KHZ: u64 = 1_000_000;

    fn bsp() -> LocalApic {
        LocalApic::new(0, true, TSC_KHZ, TIMER_KHZ)
    }

    fn write(apic: &mut LocalApic, offset: u32, value: u32) -> ApicEffect {
        apic.mmio_write(u64::from(offset), 4, value, 0)
    }

    fn read(apic: &mut LocalApic, offset: u32) -> u32 {
        apic.mmio_read(u64::from(offset), 4, 0)
    }

    #[test]
    fn identification_registers_read_as_the_sdm_defines_them() {
        let mut apic = LocalApic::new(3, false, TSC_KHZ, TIMER_KHZ);
        assert_eq!(read(&mut apic, 0x20), 3 << 24, "xAPIC ID in bits 31:24");
        let version = read(&mut apic, 0x30);
        assert_eq!(version & 0xff, 0x14, "integrated APIC");
        assert_eq!((version >> 16) & 0xff, 5, "six LVT entries");
        // Power-up values (SDM 10.4.7.1): DFR all ones, SVR 0xFF, LVTs masked.
        assert_eq!(read(&mut apic, 0xe0), 0xffff_ffff);
        assert_eq!(read(&mut apic, 0xf0), 0xff);
        for lvt in (0x320..=0x370).step_by(0x10) {
            assert_eq!(read(&mut apic, lvt), 0x1_0000, "LVT {lvt:#x}");
        }
        assert_eq!(apic.metrics().odd_total(), 0);
    }

    #[test]
    fn the_bsp_starts_in_virtual_wire_mode() {
        let mut apic = bsp();
        assert_eq!(read(&mut apic, 0xf0) & 0x100, 0x100, "software-enabled by the BIOS");
        assert_eq!(read(&mut apic, 0x350) & 0x1_0700, 0x700, "LINT0: ExtINT, unmasked");
        assert_eq!(read(&mut apic, 0x360) & 0x1_0700, 0x400, "LINT1: NMI, unmasked");
        assert!(apic.accepts_pic_interrupts());
        write(&mut apic, 0x350, 0x1_0700);
        assert!(!apic.accepts_pic_interrupts(), "masked LINT0 cuts the 8259 off");
        apic.set_mode(ApicMode::Disabled);
        assert!(apic.accepts_pic_interrupts(), "a disabled APIC leaves INTR to the 8259");
    }

    #[test]
    fn writable_registers_keep_only_their_defined_bits() {
        let mut apic = bsp();
        write(&mut apic, 0x80, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0x80), 0xff, "TPR is 8 bits");
        write(&mut apic, 0xd0, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0xd0), 0xff00_0000, "LDR bits 31:24");
        write(&mut apic, 0xe0, 0x0000_0000);
        assert_eq!(read(&mut apic, 0xe0), 0x0fff_ffff, "DFR: cluster model, low bits ones");
        write(&mut apic, 0xf0, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0xf0), 0x3ff, "SVR: vector, enable, focus");
        write(&mut apic, 0x320, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0x320), 0x7_00ff, "timer LVT: vector, mask, mode");
        write(&mut apic, 0x350, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0x350), 0x1_a7ff, "LINT0: no remote IRR, no status");
        write(&mut apic, 0x370, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0x370), 0x1_00ff, "error LVT: vector, mask");
        write(&mut apic, 0x3e0, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0x3e0), 0xb, "divide: bits 0, 1, 3");
        write(&mut apic, 0x310, 0xffff_ffff);
        assert_eq!(read(&mut apic, 0x310), 0xff00_0000, "ICR high: destination");
        // Read-only registers keep their values and count the attempt.
        write(&mut apic, 0x30, 0);
        assert_eq!(read(&mut apic, 0x30), 0x5_0014);
        assert_eq!(apic.metrics().wrong_direction, 1);
    }

    #[test]
    fn software_disable_masks_every_lvt_and_keeps_them_masked() {
        let mut apic = bsp();
        write(&mut apic, 0x320, 0x30);
        write(&mut apic, 0xf0, 0xff);
        assert_eq!(read(&mut apic, 0x320), 0x1_0030);
        assert_eq!(read(&mut apic, 0x350) & 0x1_0000, 0x1_0000);
        write(&mut apic, 0x320, 0x31);
        assert_eq!(read(&mut apic, 0x320), 0x1_0031, "the mask cannot be cleared while disabled");
        apic.accept(0x40, false);
        assert_eq!(apic.irr().word(2), 0, "no fixed interrupts while software-disabled");
    }

    #[test]
    fn the_highest_request_above_the_processor_priority_is_delivered() {
        let mut apic = bsp();
        apic.accept(0x31, false);
        apic.accept(0x55, false);
        apic.accept(0x41, true);
        assert_eq!(read(&mut apic, 0x200 + 0x10), 1 << 0x11, "IRR word 1: vector 0x31");
        assert_eq!(read(&mut apic, 0x200 + 0x20), (1 << 0x15) | (1 << 0x01), "IRR word 2: 0x41, 0x55");
        assert_eq!(read(&mut apic, 0x180 + 0x20), 1 << 0x01, "TMR: 0x41 is level-triggered");
        assert_eq!(apic.pending_vector(), Some(0x55));
        // TPR class 5 blocks class 5 and below.
        write(&mut apic, 0x80, 0x50);
        assert_eq!(read(&mut apic, 0xa0), 0x50, "PPR follows TPR");
        assert_eq!(apic.pending_vector(), None);
        write(&mut apic, 0x80, 0x4f);
        assert_eq!(apic.pending_vector(), Some(0x55));
        assert_eq!(apic.acknowledge(), 0x55);
        assert_eq!(read(&mut apic, 0x100 + 0x20), 1 << 0x15, "ISR word 2: 0x55");
        assert_eq!(read(&mut apic, 0xa0), 0x50, "PPR: ISRV class 5 above TPR class 4");
        // 0x41 (class 4) waits until 0x55 is done.
        assert_eq!(apic.pending_vector(), None);
        assert_eq!(write(&mut apic, 0xb0, 0), ApicEffect::None, "edge EOI broadcasts nothing");
        assert_eq!(read(&mut apic, 0xa0), 0x4f, "PPR = TPR when TPR's class >= ISRV's");
        write(&mut apic, 0x80, 0);
        assert_eq!(apic.acknowledge(), 0x41);
        assert_eq!(apic.acknowledge(), 0xff, "class 3 under class 4 in service: the spurious vector");
        assert_eq!(write(&mut apic, 0xb0, 0), ApicEffect::LevelEoi(0x41), "level EOI goes to the IOAPIC");
        assert_eq!(apic.acknowledge(), 0x31);
        assert_eq!(apic.metrics().spurious_interrupts, 1);
    }

    #[test]
    fn illegal_vectors_are_errors_latched_by_esr_writes() {
        let mut apic = bsp();
        write(&mut apic, 0x370, 0x2e); // error LVT unmasked, vector 0x2e
        apic.accept(0x0f, false);
        assert_eq!(read(&mut apic, 0x280), 0, "ESR shows errors only after a write");
        write(&mut apic, 0x280, 0);
        assert_eq!(read(&mut apic, 0x280), 1 << 6, "received illegal vector");
        assert_eq!(apic.pending_vector(), Some(0x2e), "the error interrupt");
        assert_eq!(write(&mut apic, 0x300, 0x0000_0005), ApicEffect::None);
        write(&mut apic, 0x280, 0);
        assert_eq!(read(&mut apic, 0x280), 1 << 5, "send illegal vector");
        write(&mut apic, 0x280, 0);
        assert_eq!(read(&mut apic, 0x280), 0, "cleared by the next write");
        read(&mut apic, 0x410);
        write(&mut apic, 0x280, 0);
        assert_eq!(read(&mut apic, 0x280), 1 << 7, "illegal register address");
    }

    #[test]
    fn icr_writes_become_interrupt_messages() {
        let mut apic = LocalApic::new(1, true, TSC_KHZ, TIMER_KHZ);
        write(&mut apic, 0x310, 0x0200_0000);
        assert_eq!(
            write(&mut apic, 0x300, 0x0000_4041),
            ApicEffect::Ipi(InterruptMessage {
                vector: 0x41,
                delivery: DeliveryMode::Fixed,
                destination: Destination::Physical(2),
                level_triggered: false,
                source: Some(1),
            })
        );
        // Linux's AP start: INIT assert, INIT de-assert, then SIPI twice.
        let init = write(&mut apic, 0x300, 0x0000_c500);
        assert!(
            matches!(init, ApicEffect::Ipi(m) if m.delivery == DeliveryMode::Init && m.destination == Destination::Physical(2))
        );
        assert_eq!(write(&mut apic, 0x300, 0x0000_8500), ApicEffect::None, "de-assert is ignored");
        let sipi = write(&mut apic, 0x300, 0x0000_0698);
        assert!(matches!(sipi, ApicEffect::Ipi(m) if m.delivery == DeliveryMode::StartUp && m.vector == 0x98));
        // Shorthands: self, all including self, all excluding self; logical.
        let shorthand = |apic: &mut LocalApic, low| match write(apic, 0x300, low) {
            ApicEffect::Ipi(message) => (message.destination, message.delivery),
            other => panic!("{other:?}"),
        };
        assert_eq!(shorthand(&mut apic, 0x0004_0030), (Destination::SelfOnly, DeliveryMode::Fixed));
        assert_eq!(shorthand(&mut apic, 0x0008_0400), (Destination::AllIncludingSelf, DeliveryMode::Nmi));
        assert_eq!(shorthand(&mut apic, 0x000c_0130), (Destination::AllExcludingSelf, DeliveryMode::LowestPriority));
        write(&mut apic, 0x310, 0x0300_0000);
        assert_eq!(shorthand(&mut apic, 0x0000_0830), (Destination::Logical(3), DeliveryMode::Fixed));
        assert_eq!(read(&mut apic, 0x300) & 0x1000, 0, "delivery status: sent at once");
        // The self shorthand with NMI is not allowed; SMI is not modelled.
        assert_eq!(write(&mut apic, 0x300, 0x0004_0400), ApicEffect::None);
        assert_eq!(write(&mut apic, 0x300, 0x0000_0200), ApicEffect::None);
        assert_eq!(apic.metrics().invalid_commands, 1);
        assert_eq!(apic.metrics().unsupported, 1);
    }

    #[test]
    fn destinations_match_in_physical_flat_and_cluster_models() {
        let mut apic = LocalApic::new(2, false, TSC_KHZ, TIMER_KHZ);
        assert!(apic.matches(Destination::Physical(2), None));
        assert!(!apic.matches(Destination::Physical(3), None));
        assert!(apic.matches(Destination::Physical(0xff), None));
        assert!(apic.matches(Destination::AllExcludingSelf, Some(0)));
        assert!(!apic.matches(Destination::AllExcludingSelf, Some(2)));
        assert!(apic.matches(Destination::SelfOnly, Some(2)));
        // Flat: logical ID bit 2.
        write(&mut apic, 0xd0, 0x0400_0000);
        assert!(apic.matches(Destination::Logical(0x0c), None));
        assert!(!apic.matches(Destination::Logical(0x03), None));
        // Cluster: cluster 1, member bit 2.
        write(&mut apic, 0xe0, 0x0fff_ffff);
        write(&mut apic, 0xd0, 0x1400_0000);
        assert!(apic.matches(Destination::Logical(0x16), None));
        assert!(!apic.matches(Destination::Logical(0x26), None), "other cluster");
        assert!(!apic.matches(Destination::Logical(0x11), None), "other member");
        assert!(apic.matches(Destination::Logical(0xff), None), "broadcast");
        apic.set_mode(ApicMode::Disabled);
        assert!(!apic.matches(Destination::AllIncludingSelf, None), "a disabled APIC hears nothing");
    }

    #[test]
    fn one_shot_timer_counts_down_and_fires_once() {
        let mut apic = bsp();
        write(&mut apic, 0x3e0, 0x3); // divide by 16
        write(&mut apic, 0x320, 0x0_00ec); // one-shot, vector 0xec
        apic.mmio_write(0x380, 4, 1000, 5_000);
        // 1000 counts * 16 at 1 GHz = 16 us.
        assert_eq!(apic.next_deadline(), Some(21_000));
        assert_eq!(apic.mmio_read(0x390, 4, 5_000), 1000);
        assert_eq!(apic.mmio_read(0x390, 4, 5_000 + 8_000), 500);
        assert_eq!(apic.mmio_read(0x390, 4, 5_000 + 15_999), 1);
        apic.advance(20_999);
        assert_eq!(apic.pending_vector(), None);
        apic.advance(21_000);
        assert_eq!(apic.pending_vector(), Some(0xec));
        assert_eq!(apic.mmio_read(0x390, 4, 21_000), 0);
        assert_eq!(apic.next_deadline(), None, "one-shot: done");
        // A new initial count restarts it; 0 stops it.
        apic.mmio_write(0x380, 4, 10, 30_000);
        assert_eq!(apic.next_deadline(), Some(30_160));
        apic.mmio_write(0x380, 4, 0, 30_001);
        assert_eq!(apic.next_deadline(), None);
    }

    #[test]
    fn divide_configuration_follows_the_sdm_table() {
        // SDM figure 10-10: bits 3,1,0 = 000 -> 2, 001 -> 4, 010 -> 8,
        // 011 -> 16, 100 -> 32, 101 -> 64, 110 -> 128, 111 -> 1.
        for (code, divisor) in [(0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xa, 128), (0xb, 1)] {
            let mut apic = bsp();
            write(&mut apic, 0x3e0, code);
            write(&mut apic, 0x320, 0x30);
            apic.mmio_write(0x380, 4, 100, 0);
            assert_eq!(apic.next_deadline(), Some(100 * divisor), "divide code {code:#x}");
        }
    }

    #[test]
    fn periodic_timer_reloads_and_coalesces_missed_periods() {
        let mut apic = bsp();
        write(&mut apic, 0x3e0, 0xb); // divide by 1
        write(&mut apic, 0x320, 0x2_0030); // periodic, vector 0x30
        apic.mmio_write(0x380, 4, 1_000_000, 0); // 1 ms
        for period in 1..=3u64 {
            assert_eq!(apic.next_deadline(), Some(period * 1_000_000));
            apic.advance(period * 1_000_000);
            assert_eq!(apic.acknowledge(), 0x30);
            write(&mut apic, 0xb0, 0);
        }
        assert_eq!(apic.mmio_read(0x390, 4, 3_250_000), 750_000);
        // 5.5 ms without an exit: one interrupt, four periods merged.
        apic.advance(8_500_000);
        assert_eq!(apic.acknowledge(), 0x30);
        assert_eq!(apic.pending_vector(), None);
        assert_eq!(apic.metrics().coalesced_ticks, 4);
        assert_eq!(apic.next_deadline(), Some(9_000_000), "still on the original grid");
        // A masked timer keeps counting but asks for no exit.
        write(&mut apic, 0x320, 0x3_0030);
        assert_eq!(apic.next_deadline(), None);
        apic.advance(9_000_000);
        assert_eq!(apic.pending_vector(), None);
    }

    #[test]
    fn periodic_timer_has_a_minimum_period() {
        let mut apic = bsp();
        write(&mut apic, 0x3e0, 0xb);
        write(&mut apic, 0x320, 0x2_0030);
        apic.mmio_write(0x380, 4, 1, 0);
        assert_eq!(apic.next_deadline(), Some(MIN_PERIOD_NS));
        assert_eq!(apic.metrics().unsupported, 1);
    }

    #[test]
    fn tsc_deadline_mode_fires_at_the_tsc_value() {
        let mut apic = bsp();
        apic.write_tsc_deadline(4_000, 0);
        assert_eq!(apic.read_tsc_deadline(), 0, "ignored outside TSC-deadline mode");
        write(&mut apic, 0x320, 0x4_00ef);
        assert_eq!(apic.timer_mode(), TimerMode::TscDeadline);
        apic.mmio_write(0x380, 4, 500, 0);
        assert_eq!(read(&mut apic, 0x380), 0, "initial count ignored in TSC-deadline mode");
        // TSC 4,000,001 at 2 GHz is 2,000,000.5 ns: the interrupt comes at
        // 2,000,001 ns, never before the TSC gets there.
        apic.write_tsc_deadline(4_000_001, 0);
        assert_eq!(apic.read_tsc_deadline(), 4_000_001);
        assert_eq!(apic.next_deadline(), Some(2_000_001));
        apic.advance(2_000_000);
        assert_eq!(apic.pending_vector(), None);
        apic.advance(2_000_001);
        assert_eq!(apic.pending_vector(), Some(0xef));
        assert_eq!(apic.read_tsc_deadline(), 0, "reads 0 once fired");
        assert_eq!(apic.next_deadline(), None);
        // A deadline in the past fires at once; 0 disarms.
        apic.write_tsc_deadline(10, 3_000_000);
        assert_eq!(apic.irr().word(7), 1 << 15);
        apic.write_tsc_deadline(8_000_000, 3_000_000);
        apic.write_tsc_deadline(0, 3_000_000);
        assert_eq!(apic.next_deadline(), None);
        // Leaving the mode disarms.
        apic.write_tsc_deadline(8_000_000, 3_000_000);
        write(&mut apic, 0x320, 0x00ef);
        assert_eq!(apic.next_deadline(), None);
    }

    #[test]
    fn init_resets_the_apic_and_a_sipi_starts_the_waiting_ap() {
        let mut ap = LocalApic::new(1, false, TSC_KHZ, TIMER_KHZ);
        ap.deliver_sipi(0x12);
        assert_eq!(ap.take_sipi(), Some(0x12), "an AP waits for its first SIPI at power-up");
        ap.deliver_sipi(0x13);
        assert_eq!(ap.take_sipi(), None, "a running AP ignores SIPIs");
        write(&mut ap, 0xf0, 0x1ff);
        write(&mut ap, 0x80, 0x20);
        ap.deliver_init();
        assert!(ap.take_init());
        assert_eq!(read(&mut ap, 0x20), 1 << 24, "INIT keeps the ID");
        assert_eq!(read(&mut ap, 0xf0), 0xff, "and resets the rest");
        assert_eq!(read(&mut ap, 0x80), 0);
        ap.deliver_sipi(0x9a);
        assert_eq!(ap.take_sipi(), Some(0x9a));
    }

    #[test]
    fn lint1_and_nmi_messages_raise_nmis() {
        let mut apic = bsp();
        apic.raise_lint1();
        assert!(apic.take_nmi());
        assert!(!apic.take_nmi());
        write(&mut apic, 0x360, 0x1_0400);
        apic.raise_lint1();
        assert!(!apic.nmi_pending(), "masked LINT1");
        apic.deliver_nmi();
        assert!(apic.take_nmi());
    }

    #[test]
    fn x2apic_msrs_follow_the_x2apic_rules() {
        let mut apic = LocalApic::new(0x21, true, TSC_KHZ, TIMER_KHZ);
        assert_eq!(apic.msr_read(0x802, 0), Err(X2apicFault::NotX2apic));
        apic.set_mode(ApicMode::X2Apic);
        assert_eq!(apic.msr_read(0x802, 0), Ok(0x21), "32-bit ID");
        // LDR = cluster (ID >> 4) << 16 | 1 << (ID & 0xf) (SDM 10.12.10.2).
        assert_eq!(apic.msr_read(0x80d, 0), Ok(0x0002_0002));
        assert_eq!(apic.msr_write(0x80d, 0, 0), Err(X2apicFault::NoSuchRegister), "LDR is read-only");
        assert_eq!(apic.msr_read(0x80e, 0), Err(X2apicFault::NoSuchRegister), "no DFR");
        assert_eq!(apic.msr_read(0x831, 0), Err(X2apicFault::NoSuchRegister), "no ICR high");
        assert_eq!(apic.msr_write(0x80b, 1, 0), Err(X2apicFault::ReservedBits), "EOI takes only 0");
        assert_eq!(apic.msr_write(0x808, 0x30, 0), Ok(ApicEffect::None));
        assert_eq!(apic.msr_read(0x808, 0), Ok(0x30));
        // The ICR is one 64-bit register, destination in bits 63:32.
        let effect = apic.msr_write(0x830, (0x0000_0123u64 << 32) | 0x4050, 0).unwrap();
        assert_eq!(
            effect,
            ApicEffect::Ipi(InterruptMessage {
                vector: 0x50,
                delivery: DeliveryMode::Fixed,
                destination: Destination::Physical(0x123),
                level_triggered: false,
                source: Some(0x21),
            })
        );
        assert_eq!(apic.msr_read(0x830, 0), Ok((0x123u64 << 32) | 0x4050));
        // SELF IPI (0x83F): a fixed interrupt to itself.
        let own = apic.msr_write(0x83f, 0x66, 0).unwrap();
        assert!(matches!(own, ApicEffect::Ipi(m) if m.destination == Destination::SelfOnly && m.vector == 0x66));
        assert_eq!(apic.msr_read(0x83f, 0), Err(X2apicFault::NoSuchRegister), "write-only");
        assert_eq!(apic.msr_write(0x820, 0, 0), Err(X2apicFault::NoSuchRegister), "IRR is read-only");
        // x2APIC logical destinations: cluster 2, member bit 1.
        assert!(apic.matches(Destination::Logical(0x0002_0002), None));
        assert!(!apic.matches(Destination::Logical(0x0001_0002), None));
        // The xAPIC page is gone in x2APIC mode.
        assert_eq!(apic.mmio_read(0x20, 4, 0), 0);
        assert!(apic.metrics().unsupported >= 1);
    }
}
