//! The guests as the control API sees them: `GuestBackend` over the shim's
//! guest table.
//!
//! The server only asks between scheduling rounds (see `guests::run_all`),
//! so nothing here races a running vCPU: an action changes the guest's
//! state, and the scheduler acts on it in its next round. The router has
//! already checked the caller's tenant against [`GuestBackend::owner`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use matryoshka_control::api::{BackendError, GuestBackend};
use matryoshka_control::model::{
    self, Action, ConsoleChunk, ExitCount, GuestInfo, GuestStats, GuestSummary, HostInfo, Image, NestedState,
};
use vmx::capabilities::VmxCapabilities;
use vmx::exit::ExitReason;

use crate::kernel::control_plane::host_info;
use crate::kernel::guests::{Guest, GuestState};

/// Longest console chunk one request gets.
const MAX_CONSOLE_CHUNK: usize = 16 * 1024;

pub struct GuestTable<'a> {
    guests: &'a mut [Guest],
    vmx: &'static VmxCapabilities,
    /// Whether the scheduler still runs: once every guest has ended it has
    /// stopped, and nothing can be started again.
    scheduling: bool,
}

impl<'a> GuestTable<'a> {
    pub fn new(guests: &'a mut [Guest], vmx: &'static VmxCapabilities, scheduling: bool) -> Self {
        Self { guests, vmx, scheduling }
    }

    fn find(&self, name: &str) -> Option<&Guest> {
        self.guests.iter().find(|guest| guest.name == name)
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut Guest> {
        self.guests.iter_mut().find(|guest| guest.name == name)
    }
}

fn api_state(state: &GuestState) -> model::GuestState {
    match state {
        GuestState::Running | GuestState::Restarting { .. } => model::GuestState::Running,
        GuestState::Paused => model::GuestState::Paused,
        GuestState::Ended { .. } => model::GuestState::Stopped,
    }
}

fn summary(guest: &Guest) -> GuestSummary {
    GuestSummary {
        name: guest.name.clone(),
        tenant: guest.config().tenant.clone(),
        state: api_state(&guest.state),
        memory_mib: guest.config().memory_mib,
        vcpus: guest.vcpu_count() as u32,
    }
}

fn info(guest: &Guest) -> GuestInfo {
    let config = guest.config();
    let stop_reason = match &guest.state {
        GuestState::Ended { state, reason } => Some(format!("{state}: {reason}")),
        _ => None,
    };
    GuestInfo {
        name: guest.name.clone(),
        tenant: config.tenant.clone(),
        state: api_state(&guest.state),
        memory_mib: config.memory_mib,
        vcpus: guest.vcpu_count() as u32,
        nested_hvm: config.nested_hvm,
        kernel: Some(format!("module {}", config.kernel)),
        initrd: config.ramdisk.as_ref().map(|ramdisk| format!("module {ramdisk}")),
        config: config.to_section_text(),
        stop_reason,
        uptime_ms: guest.uptime_ms(),
    }
}

/// "EptViolation" becomes "ept_violation": the API's names for exit
/// reasons are the variants', in snake case.
fn reason_name(reason: u16) -> String {
    let Ok(reason) = ExitReason::try_from(reason) else { return format!("reason_{reason}") };
    let mut name = String::new();
    for (index, character) in format!("{reason:?}").chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(character.to_ascii_lowercase());
    }
    name
}

fn wrong_state(guest: &Guest, action: Action) -> BackendError {
    let state = api_state(&guest.state).as_str();
    BackendError::WrongState(format!("cannot {} guest '{}': it is {state}", action.as_str(), guest.name))
}

impl GuestBackend for GuestTable<'_> {
    fn guests(&self) -> Vec<GuestSummary> {
        self.guests.iter().map(summary).collect()
    }

    fn owner(&self, name: &str) -> Option<Option<String>> {
        self.find(name).map(|guest| guest.config().tenant.clone())
    }

    fn guest(&self, name: &str) -> Option<GuestInfo> {
        self.find(name).map(info)
    }

    fn create(&mut self, _config: &str, _tenant: Option<&str>) -> Result<GuestInfo, BackendError> {
        Err(BackendError::Unsupported(
            "this shim runs no guests created over the API yet: define them in the boot configuration".into(),
        ))
    }

    fn upload(&mut self, name: &str, _image: Image, _bytes: Vec<u8>) -> Result<GuestInfo, BackendError> {
        match self.find(name) {
            Some(_) => Err(BackendError::Unsupported(
                "this guest's images come from boot modules; uploads are not implemented yet".into(),
            )),
            None => Err(BackendError::NoSuchGuest),
        }
    }

    fn act(&mut self, name: &str, action: Action) -> Result<GuestInfo, BackendError> {
        let scheduling = self.scheduling;
        let guest = self.find_mut(name).ok_or(BackendError::NoSuchGuest)?;
        match (action, &guest.state) {
            (Action::Pause, GuestState::Running) => guest.state = GuestState::Paused,
            (Action::Resume, GuestState::Paused) => guest.state = GuestState::Running,
            (Action::Destroy, GuestState::Running | GuestState::Paused | GuestState::Restarting { .. }) => {
                guest.destroy("destroyed over the control API");
            }
            (Action::Reset, GuestState::Running | GuestState::Paused) => {
                log::info!("guest {}: reset over the control API", guest.name);
                guest.state = GuestState::Restarting { reason: "reset over the control API".into(), requested: true };
            }
            (Action::Start, GuestState::Ended { .. }) if scheduling => {
                log::info!("guest {}: started over the control API", guest.name);
                guest.state = GuestState::Restarting { reason: "started over the control API".into(), requested: true };
            }
            (Action::Start | Action::Reset, GuestState::Ended { .. }) => {
                return Err(BackendError::WrongState(format!(
                    "cannot {} guest '{}': every guest had ended, and the shim stopped scheduling",
                    action.as_str(),
                    guest.name
                )));
            }
            (Action::Shutdown, GuestState::Running | GuestState::Paused) => {
                return Err(BackendError::Unsupported(
                    "asking a guest to power off (an ACPI power button) is not emulated yet; use destroy".into(),
                ));
            }
            _ => return Err(wrong_state(guest, action)),
        }
        Ok(info(guest))
    }

    fn remove(&mut self, name: &str) -> Result<(), BackendError> {
        match self.find(name) {
            Some(_) => Err(BackendError::Unsupported("guests from the boot configuration cannot be removed".into())),
            None => Err(BackendError::NoSuchGuest),
        }
    }

    fn console(&self, name: &str, offset: u64, max_len: usize) -> Option<ConsoleChunk> {
        let guest = self.find(name)?;
        let mut data = alloc::vec![0; max_len.min(MAX_CONSOLE_CHUNK)];
        let read = guest.console.read_from(offset, &mut data);
        data.truncate(read.len);
        Some(ConsoleChunk { start: read.offset, next: read.next_offset(), data })
    }

    fn stats(&self, name: &str) -> Option<GuestStats> {
        let guest = self.find(name)?;
        let exits =
            guest.exit_counts().map(|(reason, l1, l2)| ExitCount { reason: reason_name(reason), l1, l2 }).collect();
        Some(GuestStats {
            name: guest.name.clone(),
            uptime_ms: guest.uptime_ms(),
            exits,
            monitor_memory_bytes: guest.monitor_memory_bytes(),
            ept02_pages: guest.ept02_pages(),
        })
    }

    fn nested_state(&self, name: &str) -> Option<NestedState> {
        let guest = self.find(name)?;
        Some(NestedState { name: guest.name.clone(), nested_hvm: guest.config().nested_hvm, vcpus: Vec::new() })
    }

    fn host(&self) -> HostInfo {
        host_info(Some(self.vmx))
    }
}
