//! The messages: events from the shim, responses from the monitor.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::codec::{DecodeError, Reader, Writer};
use crate::{ABI_VERSION, HEADER_LEN, MAGIC, MAX_ACTIONS, MAX_PAYLOAD, MAX_TEXT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum MessageKind {
    Event = 1,
    Response = 2,
}

/// General registers in their x86 encoding order (the order exit
/// qualifications and instruction encodings number them): RAX, RCX, RDX,
/// RBX, RSP, RBP, RSI, RDI, R8-R15.
pub const GPR_COUNT: usize = 16;
pub const RAX: u8 = 0;
pub const RCX: u8 = 1;
pub const RDX: u8 = 2;
pub const RBX: u8 = 3;
pub const RSP: u8 = 4;
pub const RBP: u8 = 5;
pub const RSI: u8 = 6;
pub const RDI: u8 = 7;

/// The guest state a monitor needs to handle most exits, sent with each.
/// Payload layout: 16 GPRs (u64 each), RIP, RFLAGS, CR0, CR3, CR4, EFER,
/// TSC (u64 each), CS selector (u16), CS access rights, interruptibility
/// state, activity state (u32 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestSnapshot {
    pub gprs: [u64; GPR_COUNT],
    pub rip: u64,
    pub rflags: u64,
    /// As the guest sees them (read shadows applied).
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// The guest's TSC at the exit.
    pub tsc: u64,
    pub cs_selector: u16,
    pub cs_access_rights: u32,
    pub interruptibility: u32,
    pub activity_state: u32,
}

/// The guest-state fields, in this order, that [`FullState`] carries:
/// ES, CS, SS, DS, FS, GS, LDTR and TR (selector, base, limit, access
/// rights each); RSP, RIP, RFLAGS, CR0, CR3, CR4 (the real registers, no
/// read shadows), DR7, EFER, PAT, DEBUGCTL, GDTR and IDTR (base, limit),
/// SYSENTER CS/ESP/EIP, SMBASE, interruptibility, activity state, pending
/// debug exceptions, PDPTE0-3 and the VMX-preemption timer.
pub const FULL_STATE_FIELDS: [u32; FULL_STATE_LEN] = full_state_fields();
pub const FULL_STATE_LEN: usize = 58;
/// Where the VMX-preemption timer sits in [`FULL_STATE_FIELDS`]: last.
pub const FULL_STATE_TIMER_INDEX: usize = FULL_STATE_LEN - 1;

const fn full_state_fields() -> [u32; FULL_STATE_LEN] {
    use vmx::vmcs::{Guest32, Guest64, GuestNatural, SEGMENT_FIELDS};
    let segments = SEGMENT_FIELDS;
    let rest = [
        GuestNatural::Rsp as u32,
        GuestNatural::Rip as u32,
        GuestNatural::Rflags as u32,
        GuestNatural::Cr0 as u32,
        GuestNatural::Cr3 as u32,
        GuestNatural::Cr4 as u32,
        GuestNatural::Dr7 as u32,
        Guest64::Ia32Efer as u32,
        Guest64::Ia32Pat as u32,
        Guest64::Ia32Debugctl as u32,
        GuestNatural::GdtrBase as u32,
        Guest32::GdtrLimit as u32,
        GuestNatural::IdtrBase as u32,
        Guest32::IdtrLimit as u32,
        Guest32::Ia32SysenterCs as u32,
        GuestNatural::Ia32SysenterEsp as u32,
        GuestNatural::Ia32SysenterEip as u32,
        Guest32::Smbase as u32,
        Guest32::InterruptibilityState as u32,
        Guest32::ActivityState as u32,
        GuestNatural::PendingDebugExceptions as u32,
        Guest64::Pdpte0 as u32,
        Guest64::Pdpte1 as u32,
        Guest64::Pdpte2 as u32,
        Guest64::Pdpte3 as u32,
        Guest32::PreemptionTimerValue as u32,
    ];
    let mut fields = [0u32; FULL_STATE_LEN];
    let mut index = 0;
    while index < segments.len() {
        let (selector, base, limit, rights) = segments[index];
        fields[index * 4] = selector as u32;
        fields[index * 4 + 1] = base as u32;
        fields[index * 4 + 2] = limit as u32;
        fields[index * 4 + 3] = rights as u32;
        index += 1;
    }
    let mut at = 0;
    while at < rest.len() {
        fields[32 + at] = rest[at];
        at += 1;
    }
    fields
}

/// Everything in the guest-state area, for exits the monitor needs it for:
/// every exit of L2 (to reflect it into vmcs12), and the VMX instructions
/// of L1 (to decode memory operands through segments and check modes).
/// Payload layout: from-L2 (u8 bool), then [`FULL_STATE_LEN`] u64 values
/// in [`FULL_STATE_FIELDS`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullState {
    /// The exit came from L2 (the vCPU ran on vmcs02).
    pub from_l2: bool,
    pub fields: [u64; FULL_STATE_LEN],
}

impl Default for FullState {
    fn default() -> Self {
        Self { from_l2: false, fields: [0; FULL_STATE_LEN] }
    }
}

impl FullState {
    /// The value of guest-state field `encoding`, 0 if it is not carried.
    pub fn field(&self, encoding: u32) -> u64 {
        FULL_STATE_FIELDS.iter().position(|&field| field == encoding).map_or(0, |index| self.fields[index])
    }
}

/// A VM exit, as the VMCS reported it.
/// Payload layout: vCPU, exit reason (u32); qualification, guest linear
/// address, guest physical address (u64); instruction length, instruction
/// info, exit interruption info and error code, IDT-vectoring info and error
/// code (u32); then the [`GuestSnapshot`]; then a has-full-state flag (u8)
/// and, if set, the [`FullState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitEvent {
    pub vcpu: u32,
    /// The full exit-reason field (basic reason in bits 15:0).
    pub exit_reason: u32,
    pub qualification: u64,
    pub guest_linear_address: u64,
    pub guest_physical_address: u64,
    pub instruction_length: u32,
    pub instruction_info: u32,
    pub interruption_info: u32,
    pub interruption_error_code: u32,
    pub idt_vectoring_info: u32,
    pub idt_vectoring_error_code: u32,
    pub guest: GuestSnapshot,
    pub full: Option<FullState>,
}

/// What the shim tells a monitor. Payload: a tag byte, then the variant.
// Exit is by far the largest and the most frequent variant; boxing it would
// put a heap allocation on every VM exit.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Tag 1. The guest was created: the monitor loads it into its RAM and
    /// answers with the vCPU's initial state. Layout: vCPU (u32), RAM bytes,
    /// now (u64).
    Start { vcpu: u32, ram_bytes: u64, now_ns: u64 },
    /// Tag 2. A VM exit the shim does not handle itself.
    Exit(ExitEvent),
    /// Tag 3. A deadline the monitor set has passed, or the monitor kicked
    /// this halted vCPU (`Action::Kick`). Layout: vCPU (u32), now (u64).
    Timer { vcpu: u32, now_ns: u64 },
    /// Tag 4. The host asks the guest to power off (the control API's
    /// `shutdown`): the monitor presses its ACPI power button (PM1_STS
    /// PWRBTN_STS, an SCI if the guest enabled PWRBTN_EN) and answers as it
    /// would a `Timer` for this vCPU: it may inject the SCI, halt or kick.
    /// A guest that does not listen keeps running. Layout: vCPU (u32), now
    /// (u64).
    PowerButton { vcpu: u32, now_ns: u64 },
}

/// Event types VM entry can inject (SDM 25.8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InjectionKind {
    ExternalInterrupt = 0,
    Nmi = 2,
    HardwareException = 3,
    SoftwareInterrupt = 4,
    PrivilegedSoftwareException = 5,
    SoftwareException = 6,
}

impl InjectionKind {
    pub(crate) fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Self::ExternalInterrupt,
            2 => Self::Nmi,
            3 => Self::HardwareException,
            4 => Self::SoftwareInterrupt,
            5 => Self::PrivilegedSoftwareException,
            6 => Self::SoftwareException,
            _ => return None,
        })
    }
}

/// Why a monitor ends its guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The guest powered off (ACPI, keyboard controller, or its own choice).
    PowerOff,
    /// The guest asked for a reset.
    Reboot,
    /// The guest wrote `status` to the debug-exit port.
    DebugExit { status: u32 },
    /// The guest triple-faulted.
    TripleFault,
    /// The guest did something the monitor cannot emulate (the detail says
    /// what), e.g. an access to unbacked guest-physical memory.
    GuestError,
    /// The monitor itself failed.
    MonitorError,
}

/// Log levels, as the `log` crate orders them.
pub const LOG_ERROR: u8 = 1;
pub const LOG_WARN: u8 = 2;
pub const LOG_INFO: u8 = 3;
pub const LOG_DEBUG: u8 = 4;
pub const LOG_TRACE: u8 = 5;

/// One thing a monitor asks the shim to do. Payload: a tag byte, then the
/// variant's fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tag 1: index (u8, 0..16, x86 order), value (u64).
    SetGpr { index: u8, value: u64 },
    /// Tag 2: a VMCS field (u32 encoding, u64 value). The shim accepts only
    /// guest-state fields and the few controls a monitor may steer.
    WriteField { encoding: u32, value: u64 },
    /// Tag 3: vector (u8), kind (u8), has error code (u8), error code (u32).
    InjectEvent { vector: u8, kind: InjectionKind, error_code: Option<u32> },
    /// Tag 4: RIP += the exit's instruction length.
    SkipInstruction,
    /// Tag 5: the vCPU waits for an interrupt, or until a deadline (u8
    /// has-deadline, u64 ns).
    Halt { wake_at_ns: Option<u64> },
    /// Tag 6: deliver `Event::Timer` at this time (u8 has-deadline, u64 ns;
    /// none cancels).
    SetTimer { at_ns: Option<u64> },
    /// Tag 7: exit as soon as the guest can take an interrupt (u8 bool).
    InterruptWindow { enable: bool },
    /// Tag 8: bytes the guest wrote to its console, for the shim's console
    /// mirror (u16 length + bytes).
    ConsoleOutput { bytes: Vec<u8> },
    /// Tag 9: a log line from the monitor (u8 level, u16 length + UTF-8).
    Log { level: u8, text: String },
    /// Tag 10: end the guest (u8 reason, u32 status for debug exit, u16
    /// length + UTF-8 detail).
    Stop { reason: StopReason, detail: String },
    /// Tag 11: the guest's XCR0 from now on (u64), after its XSETBV passed
    /// the monitor's checks (the shim checks again against the CPU).
    SetXcr0 { value: u64 },
    /// Tag 12: another vCPU of this guest (u32) has something new to take
    /// (an interrupt, NMI, INIT or SIPI): before it next runs, the shim
    /// gives it an event. A halted vCPU gets `Event::Timer`; a runnable
    /// one is entered with a zero preemption-timer value, so that it exits
    /// before its first instruction and the monitor sees its state.
    Kick { vcpu: u32 },
    /// Tag 13: run L2 (u8 bool: on the shadow EPT02, else on EPT01). The
    /// vCPU switches to its vmcs02 (VMLAUNCH the first time, VMRESUME
    /// after); the actions after this one act on vmcs02, whose writable
    /// controls the shim constrains (see its `action_validation`). The
    /// general registers carry over, as a VM entry leaves them.
    EnterL2 { ept02: bool },
    /// Tag 14: back to L1 on vmcs01 (after an exit reflected to L1, or an
    /// entry that failed late); the actions after this act on vmcs01.
    ExitL2,
    /// Tag 15: map the `size_log2` (12, 21 or 30) block of L2
    /// guest-physical `l2_gpa` to L1 guest-physical `l1_gpa` in EPT02,
    /// with EPT permissions `permissions` (bits 2:0). Layout: u64, u64,
    /// u8, u8. The shim checks that the block is L1's RAM and translates
    /// it through EPT01 itself.
    MapL2 { l2_gpa: u64, l1_gpa: u64, size_log2: u8, permissions: u8 },
    /// Tag 16: drop every EPT02 translation (L1's INVEPT, or a full
    /// EPT02).
    FlushEpt02,
    /// Tag 17: flush L2's TLB tag, VPID02 (L1's INVVPID, or L1 switching
    /// L2 contexts without VPID).
    FlushVpid02,
}

/// A monitor's answer to one event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub actions: Vec<Action>,
}

/// A message that cannot be encoded within the ABI's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    TooManyActions(usize),
    TextTooLong { what: &'static str, length: usize },
    TooLarge(usize),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyActions(count) => write!(f, "{count} actions exceed the limit of {MAX_ACTIONS}"),
            Self::TextTooLong { what, length } => write!(f, "{what} of {length} bytes exceeds {MAX_TEXT}"),
            Self::TooLarge(length) => write!(f, "a {length}-byte payload does not fit the message page"),
        }
    }
}

fn header(bytes: &mut Vec<u8>, kind: MessageKind, sequence: u32) {
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&ABI_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(kind as u16).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]); // length, patched in `finish`
    bytes.extend_from_slice(&sequence.to_le_bytes());
}

fn finish(mut bytes: Vec<u8>) -> Result<Vec<u8>, EncodeError> {
    let payload = bytes.len() - HEADER_LEN;
    if payload > MAX_PAYLOAD {
        return Err(EncodeError::TooLarge(payload));
    }
    bytes[8..12].copy_from_slice(&(payload as u32).to_le_bytes());
    Ok(bytes)
}

/// Checks the header and returns (kind, sequence, payload).
fn open(bytes: &[u8]) -> Result<(u16, u32, &[u8]), DecodeError> {
    let mut reader = Reader::new(bytes);
    let magic = [reader.u8()?, reader.u8()?, reader.u8()?, reader.u8()?];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = reader.u16()?;
    if version != ABI_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = reader.u16()?;
    if kind != MessageKind::Event as u16 && kind != MessageKind::Response as u16 {
        return Err(DecodeError::UnknownKind(kind));
    }
    let length = reader.u32()? as usize;
    let sequence = reader.u32()?;
    if length > MAX_PAYLOAD {
        return Err(DecodeError::PayloadTooLong(length));
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() < length {
        return Err(DecodeError::LengthMismatch { header: length, actual: payload.len() });
    }
    // Bytes after the message are allowed: the page holds older, longer
    // messages. Only the declared payload is read.
    Ok((kind, sequence, &payload[..length]))
}

pub fn encode_event(sequence: u32, event: &Event) -> Result<Vec<u8>, EncodeError> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + 256);
    header(&mut bytes, MessageKind::Event, sequence);
    let mut writer = Writer::new(&mut bytes);
    match event {
        Event::Start { vcpu, ram_bytes, now_ns } => {
            writer.u8(1);
            writer.u32(*vcpu);
            writer.u64(*ram_bytes);
            writer.u64(*now_ns);
        }
        Event::Exit(exit) => {
            writer.u8(2);
            write_exit(&mut writer, exit);
        }
        Event::Timer { vcpu, now_ns } => {
            writer.u8(3);
            writer.u32(*vcpu);
            writer.u64(*now_ns);
        }
        Event::PowerButton { vcpu, now_ns } => {
            writer.u8(4);
            writer.u32(*vcpu);
            writer.u64(*now_ns);
        }
    }
    finish(bytes)
}

/// Decodes an event; returns its sequence number and the event.
pub fn decode_event(bytes: &[u8]) -> Result<(u32, Event), DecodeError> {
    let (kind, sequence, payload) = open(bytes)?;
    if kind != MessageKind::Event as u16 {
        return Err(DecodeError::WrongKind { expected: "event", found: kind });
    }
    let mut reader = Reader::new(payload);
    let event = match reader.u8()? {
        1 => Event::Start { vcpu: reader.u32()?, ram_bytes: reader.u64()?, now_ns: reader.u64()? },
        2 => Event::Exit(read_exit(&mut reader)?),
        3 => Event::Timer { vcpu: reader.u32()?, now_ns: reader.u64()? },
        4 => Event::PowerButton { vcpu: reader.u32()?, now_ns: reader.u64()? },
        tag => return Err(DecodeError::UnknownTag { what: "event", tag }),
    };
    reader.finish()?;
    Ok((sequence, event))
}

fn write_exit(writer: &mut Writer, exit: &ExitEvent) {
    writer.u32(exit.vcpu);
    writer.u32(exit.exit_reason);
    writer.u64(exit.qualification);
    writer.u64(exit.guest_linear_address);
    writer.u64(exit.guest_physical_address);
    for value in [
        exit.instruction_length,
        exit.instruction_info,
        exit.interruption_info,
        exit.interruption_error_code,
        exit.idt_vectoring_info,
        exit.idt_vectoring_error_code,
    ] {
        writer.u32(value);
    }
    let guest = &exit.guest;
    for value in guest.gprs {
        writer.u64(value);
    }
    for value in [guest.rip, guest.rflags, guest.cr0, guest.cr3, guest.cr4, guest.efer, guest.tsc] {
        writer.u64(value);
    }
    writer.u16(guest.cs_selector);
    writer.u32(guest.cs_access_rights);
    writer.u32(guest.interruptibility);
    writer.u32(guest.activity_state);
    writer.u8(u8::from(exit.full.is_some()));
    if let Some(full) = &exit.full {
        writer.u8(u8::from(full.from_l2));
        for value in full.fields {
            writer.u64(value);
        }
    }
}

fn read_exit(reader: &mut Reader) -> Result<ExitEvent, DecodeError> {
    let mut exit = ExitEvent {
        vcpu: reader.u32()?,
        exit_reason: reader.u32()?,
        qualification: reader.u64()?,
        guest_linear_address: reader.u64()?,
        guest_physical_address: reader.u64()?,
        instruction_length: reader.u32()?,
        instruction_info: reader.u32()?,
        interruption_info: reader.u32()?,
        interruption_error_code: reader.u32()?,
        idt_vectoring_info: reader.u32()?,
        idt_vectoring_error_code: reader.u32()?,
        guest: GuestSnapshot::default(),
        full: None,
    };
    let guest = &mut exit.guest;
    for value in guest.gprs.iter_mut() {
        *value = reader.u64()?;
    }
    guest.rip = reader.u64()?;
    guest.rflags = reader.u64()?;
    guest.cr0 = reader.u64()?;
    guest.cr3 = reader.u64()?;
    guest.cr4 = reader.u64()?;
    guest.efer = reader.u64()?;
    guest.tsc = reader.u64()?;
    guest.cs_selector = reader.u16()?;
    guest.cs_access_rights = reader.u32()?;
    guest.interruptibility = reader.u32()?;
    guest.activity_state = reader.u32()?;
    if read_bool(reader, "full-state flag")? {
        let mut full = FullState { from_l2: read_bool(reader, "from-L2 flag")?, ..FullState::default() };
        for value in full.fields.iter_mut() {
            *value = reader.u64()?;
        }
        exit.full = Some(full);
    }
    Ok(exit)
}

pub fn encode_response(sequence: u32, response: &Response) -> Result<Vec<u8>, EncodeError> {
    if response.actions.len() > MAX_ACTIONS {
        return Err(EncodeError::TooManyActions(response.actions.len()));
    }
    let mut bytes = Vec::with_capacity(HEADER_LEN + 64);
    header(&mut bytes, MessageKind::Response, sequence);
    let mut writer = Writer::new(&mut bytes);
    writer.u8(response.actions.len() as u8);
    for action in &response.actions {
        write_action(&mut writer, action)?;
    }
    finish(bytes)
}

/// Decodes a response; returns its sequence number and the response.
pub fn decode_response(bytes: &[u8]) -> Result<(u32, Response), DecodeError> {
    let (kind, sequence, payload) = open(bytes)?;
    if kind != MessageKind::Response as u16 {
        return Err(DecodeError::WrongKind { expected: "response", found: kind });
    }
    let mut reader = Reader::new(payload);
    let count = usize::from(reader.u8()?);
    if count > MAX_ACTIONS {
        return Err(DecodeError::TooMany { what: "actions", count, limit: MAX_ACTIONS });
    }
    let mut actions = Vec::with_capacity(count);
    for _ in 0..count {
        actions.push(read_action(&mut reader)?);
    }
    reader.finish()?;
    Ok((sequence, Response { actions }))
}

fn optional_u64(writer: &mut Writer, value: Option<u64>) {
    writer.u8(u8::from(value.is_some()));
    writer.u64(value.unwrap_or(0));
}

fn read_optional_u64(reader: &mut Reader) -> Result<Option<u64>, DecodeError> {
    let present = read_bool(reader, "option flag")?;
    let value = reader.u64()?;
    Ok(present.then_some(value))
}

fn read_bool(reader: &mut Reader, what: &'static str) -> Result<bool, DecodeError> {
    match reader.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(DecodeError::Invalid { what, value: u64::from(other) }),
    }
}

fn text(writer: &mut Writer, what: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
    if bytes.len() > MAX_TEXT {
        return Err(EncodeError::TextTooLong { what, length: bytes.len() });
    }
    writer.bytes(bytes);
    Ok(())
}

fn write_action(writer: &mut Writer, action: &Action) -> Result<(), EncodeError> {
    match action {
        Action::SetGpr { index, value } => {
            writer.u8(1);
            writer.u8(*index);
            writer.u64(*value);
        }
        Action::WriteField { encoding, value } => {
            writer.u8(2);
            writer.u32(*encoding);
            writer.u64(*value);
        }
        Action::InjectEvent { vector, kind, error_code } => {
            writer.u8(3);
            writer.u8(*vector);
            writer.u8(*kind as u8);
            writer.u8(u8::from(error_code.is_some()));
            writer.u32(error_code.unwrap_or(0));
        }
        Action::SkipInstruction => writer.u8(4),
        Action::Halt { wake_at_ns } => {
            writer.u8(5);
            optional_u64(writer, *wake_at_ns);
        }
        Action::SetTimer { at_ns } => {
            writer.u8(6);
            optional_u64(writer, *at_ns);
        }
        Action::InterruptWindow { enable } => {
            writer.u8(7);
            writer.u8(u8::from(*enable));
        }
        Action::ConsoleOutput { bytes } => {
            writer.u8(8);
            text(writer, "console output", bytes)?;
        }
        Action::Log { level, text: line } => {
            writer.u8(9);
            writer.u8(*level);
            text(writer, "log line", line.as_bytes())?;
        }
        Action::Stop { reason, detail } => {
            writer.u8(10);
            let (code, status) = match reason {
                StopReason::PowerOff => (0, 0),
                StopReason::Reboot => (1, 0),
                StopReason::DebugExit { status } => (2, *status),
                StopReason::TripleFault => (3, 0),
                StopReason::GuestError => (4, 0),
                StopReason::MonitorError => (5, 0),
            };
            writer.u8(code);
            writer.u32(status);
            text(writer, "stop detail", detail.as_bytes())?;
        }
        Action::SetXcr0 { value } => {
            writer.u8(11);
            writer.u64(*value);
        }
        Action::Kick { vcpu } => {
            writer.u8(12);
            writer.u32(*vcpu);
        }
        Action::EnterL2 { ept02 } => {
            writer.u8(13);
            writer.u8(u8::from(*ept02));
        }
        Action::ExitL2 => writer.u8(14),
        Action::MapL2 { l2_gpa, l1_gpa, size_log2, permissions } => {
            writer.u8(15);
            writer.u64(*l2_gpa);
            writer.u64(*l1_gpa);
            writer.u8(*size_log2);
            writer.u8(*permissions);
        }
        Action::FlushEpt02 => writer.u8(16),
        Action::FlushVpid02 => writer.u8(17),
    }
    Ok(())
}

fn read_action(reader: &mut Reader) -> Result<Action, DecodeError> {
    Ok(match reader.u8()? {
        1 => {
            let index = reader.u8()?;
            if usize::from(index) >= GPR_COUNT {
                return Err(DecodeError::Invalid { what: "register index", value: u64::from(index) });
            }
            Action::SetGpr { index, value: reader.u64()? }
        }
        2 => Action::WriteField { encoding: reader.u32()?, value: reader.u64()? },
        3 => {
            let vector = reader.u8()?;
            let raw_kind = reader.u8()?;
            let kind = InjectionKind::from_u8(raw_kind)
                .ok_or(DecodeError::Invalid { what: "injection kind", value: u64::from(raw_kind) })?;
            let has_error_code = read_bool(reader, "error-code flag")?;
            let error_code = reader.u32()?;
            Action::InjectEvent { vector, kind, error_code: has_error_code.then_some(error_code) }
        }
        4 => Action::SkipInstruction,
        5 => Action::Halt { wake_at_ns: read_optional_u64(reader)? },
        6 => Action::SetTimer { at_ns: read_optional_u64(reader)? },
        7 => Action::InterruptWindow { enable: read_bool(reader, "interrupt-window flag")? },
        8 => Action::ConsoleOutput { bytes: reader.bytes("console output bytes", MAX_TEXT)? },
        9 => {
            let level = reader.u8()?;
            if !(LOG_ERROR..=LOG_TRACE).contains(&level) {
                return Err(DecodeError::Invalid { what: "log level", value: u64::from(level) });
            }
            Action::Log { level, text: reader.text("log line", MAX_TEXT)? }
        }
        10 => {
            let code = reader.u8()?;
            let status = reader.u32()?;
            let reason = match code {
                0 => StopReason::PowerOff,
                1 => StopReason::Reboot,
                2 => StopReason::DebugExit { status },
                3 => StopReason::TripleFault,
                4 => StopReason::GuestError,
                5 => StopReason::MonitorError,
                _ => return Err(DecodeError::Invalid { what: "stop reason", value: u64::from(code) }),
            };
            Action::Stop { reason, detail: reader.text("stop detail", MAX_TEXT)? }
        }
        11 => Action::SetXcr0 { value: reader.u64()? },
        12 => Action::Kick { vcpu: reader.u32()? },
        13 => Action::EnterL2 { ept02: read_bool(reader, "EPT02 flag")? },
        14 => Action::ExitL2,
        15 => Action::MapL2 {
            l2_gpa: reader.u64()?,
            l1_gpa: reader.u64()?,
            size_log2: reader.u8()?,
            permissions: reader.u8()?,
        },
        16 => Action::FlushEpt02,
        17 => Action::FlushVpid02,
        tag => return Err(DecodeError::UnknownTag { what: "action", tag }),
    })
}
