//! The JSON documents of the control API, shared by the server and netctl so the two cannot
//! drift apart. `docs/api/openapi.yaml` describes the same shapes.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestState {
    /// Defined but never started: images may still be uploaded.
    Created,
    Running,
    Paused,
    /// Asked to power off; still running until it does.
    ShuttingDown,
    Stopped,
}

impl GuestState {
    pub const ALL: [GuestState; 5] =
        [GuestState::Created, GuestState::Running, GuestState::Paused, GuestState::ShuttingDown, GuestState::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            GuestState::Created => "created",
            GuestState::Running => "running",
            GuestState::Paused => "paused",
            GuestState::ShuttingDown => "shutting_down",
            GuestState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for GuestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSummary {
    pub name: String,
    /// `None`: managed by the admin only.
    pub tenant: Option<String>,
    pub state: GuestState,
    pub memory_mib: u64,
    pub vcpus: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestList {
    pub guests: Vec<GuestSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestInfo {
    pub name: String,
    pub tenant: Option<String>,
    pub state: GuestState,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub nested_hvm: bool,
    /// Where the kernel comes from, e.g. "module bzImage" or "uploaded, 2211840 bytes".
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    /// The guest's configuration, in the boot configuration's `xl.cfg` syntax.
    pub config: String,
    /// Why the guest stopped (e.g. "triple fault", "destroyed"); `None` while it runs.
    pub stop_reason: Option<String>,
    pub uptime_ms: u64,
}

impl GuestInfo {
    pub fn summary(&self) -> GuestSummary {
        GuestSummary {
            name: self.name.clone(),
            tenant: self.tenant.clone(),
            state: self.state,
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
        }
    }
}

/// `POST /v1/guests`: the guest's name and everything else come from the configuration text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGuest {
    pub config: String,
    /// Only the admin may create a guest for a tenant; a tenant's guests are always its own.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Pause,
    Resume,
    /// Ask the guest to power off (ACPI power button or equivalent).
    Shutdown,
    /// Stop it now, without asking.
    Destroy,
    Reset,
}

impl Action {
    pub const ALL: [Action; 6] =
        [Action::Start, Action::Pause, Action::Resume, Action::Shutdown, Action::Destroy, Action::Reset];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Shutdown => "shutdown",
            Action::Destroy => "destroy",
            Action::Reset => "reset",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    Kernel,
    Initrd,
}

/// A slice of a guest's console ring. Offsets count every byte the guest ever wrote, so a
/// client that keeps `next` never sees a byte twice, and sees a gap as `start > offset asked`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleChunk {
    pub start: u64,
    pub next: u64,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCount {
    /// The basic exit reason's name, e.g. "cpuid", "ept_violation".
    pub reason: String,
    /// Exits while the guest itself ran.
    pub l1: u64,
    /// Exits while a guest of the guest (an L2) ran.
    pub l2: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestStats {
    pub name: String,
    pub uptime_ms: u64,
    pub exits: Vec<ExitCount>,
    pub monitor_memory_bytes: u64,
    pub ept02_pages: u64,
}

impl GuestStats {
    pub fn exits_l1(&self) -> u64 {
        self.exits.iter().map(|e| e.l1).sum()
    }

    pub fn exits_l2(&self) -> u64 {
        self.exits.iter().map(|e| e.l2).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vmcs12Field {
    pub name: String,
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuNestedState {
    pub vcpu: u32,
    /// The guest executed VMXON.
    pub vmxon: bool,
    /// Guest-physical address of its current VMCS, if any.
    pub current_vmcs12: Option<u64>,
    pub launched: bool,
    /// An L2 is running on this vCPU right now.
    pub l2_active: bool,
    /// A debugging selection of vmcs12 fields.
    pub fields: Vec<Vmcs12Field>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NestedState {
    pub name: String,
    pub nested_hvm: bool,
    pub vcpus: Vec<VcpuNestedState>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub version: String,
    pub cpu_vendor: String,
    pub cpu_model: String,
    pub logical_cpus: u32,
    /// VMX capabilities the shim found and uses, e.g. "ept", "vpid", "unrestricted_guest".
    pub vmx_features: Vec<String>,
    pub total_memory_bytes: u64,
    pub free_memory_bytes: u64,
    pub uptime_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
