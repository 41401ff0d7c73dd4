//! The guests as the control API sees them: `GuestBackend` over the shim's
//! guest table, and the guests defined over the API that have not started
//! yet ([`Draft`]s).
//!
//! The server only asks between scheduling rounds (see `guests::run_all`),
//! so nothing here races a running vCPU: an action changes the guest's
//! state, and the scheduler acts on it in its next round. The router has
//! already checked the caller's tenant against [`GuestBackend::owner`].
//!
//! A guest's life over the API: `create` checks its configuration and
//! keeps it as a draft (state `created`, no memory yet); `upload` copies a
//! kernel or initrd into frames of the draft's own; `start` allocates its
//! RAM, vCPUs and monitor and moves it to the guest table; `destroy` ends
//! it (its memory stays, for `start` to run it again); `remove` drops a
//! draft or an ended guest with everything it holds. A step that fails
//! leaves things as they were: a draft whose start fails stays a draft.
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use l0_shim::boot_info::BootInfo;
use l0_shim::guest_request::{parse_config, start_failure, UPLOADED_INITRD, UPLOADED_KERNEL};
use matryoshka_config::GuestConfig;
use matryoshka_control::api::{BackendError, GuestBackend};
use matryoshka_control::model::{
    self, Action, ConsoleChunk, ExitCount, GuestInfo, GuestStats, GuestSummary, HostInfo, Image, NestedState,
};
use monitor_abi::boot_info::TestHook;
use vmx::capabilities::VmxCapabilities;
use vmx::exit::ExitReason;

use crate::kernel::control_plane::host_info;
use crate::kernel::guest_images::{Upload, Uploads};
use crate::kernel::guests::{Guest, GuestState};
use crate::kernel::memory;

/// Longest console chunk one request gets.
const MAX_CONSOLE_CHUNK: usize = 16 * 1024;
/// Most guests (running, ended and drafts together) the API lets exist:
/// each costs shim heap (its console ring, 64 KiB) besides its own memory.
pub const MAX_GUESTS: usize = 32;

/// A guest defined over the API and not started yet: its configuration
/// and its uploads, no memory of its own otherwise.
pub struct Draft {
    config: GuestConfig,
    uploads: Uploads,
}

/// What the control plane keeps between requests about the guests it
/// created.
#[derive(Default)]
pub struct ApiGuests {
    drafts: Vec<Draft>,
    /// The next VPID to try for a guest started over the API: they count
    /// up, so a removed guest's VPID is not soon reused.
    next_vpid: u16,
}

pub struct GuestTable<'a> {
    guests: &'a mut Vec<Guest>,
    api: &'a mut ApiGuests,
    boot: &'a BootInfo,
    vmx: &'static VmxCapabilities,
}

impl<'a> GuestTable<'a> {
    pub fn new(
        guests: &'a mut Vec<Guest>,
        api: &'a mut ApiGuests,
        boot: &'a BootInfo,
        vmx: &'static VmxCapabilities,
    ) -> Self {
        Self { guests, api, boot, vmx }
    }

    fn find(&self, name: &str) -> Option<&Guest> {
        self.guests.iter().find(|guest| guest.name == name)
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut Guest> {
        self.guests.iter_mut().find(|guest| guest.name == name)
    }

    fn draft(&self, name: &str) -> Option<&Draft> {
        self.api.drafts.iter().find(|draft| draft.config.name == name)
    }

    fn free_vpid(&mut self) -> Result<u16, BackendError> {
        for _ in 0..u16::MAX {
            let candidate = self.api.next_vpid.max(1);
            self.api.next_vpid = candidate.wrapping_add(1);
            if !self.guests.iter().any(|guest| guest.vpid() == candidate) {
                return Ok(candidate);
            }
        }
        Err(BackendError::OutOfResources("no VPID is free".into()))
    }

    /// Starts draft `index`: on success it moves to the guest table; on
    /// failure it stays as it was and the error says why.
    fn start_draft(&mut self, index: usize) -> Result<GuestInfo, BackendError> {
        let draft = &self.api.drafts[index];
        let name = draft.config.name.clone();
        if draft.uploads.kernel.is_none() && self.boot.module(&draft.config.kernel).is_none() {
            return Err(BackendError::WrongState(format!(
                "guest '{name}' has no kernel: upload one (PUT /v1/guests/{name}/kernel) or name a boot module"
            )));
        }
        enough_memory(&draft.config)?;
        let vpid = self.free_vpid()?;
        let draft = &self.api.drafts[index];
        match Guest::create(&draft.config, self.boot, &draft.uploads, self.vmx, vpid, TestHook::None) {
            Ok(guest) => {
                log::info!("guest {name}: started over the control API");
                self.api.drafts.remove(index);
                self.guests.push(guest);
                Ok(info(self.guests.last().expect("just pushed")))
            }
            Err(error) => {
                log::warn!("guest {name}: cannot be started: {error}");
                Err(start_failure(&name, &error))
            }
        }
    }
}

/// Refuses a guest whose RAM the frame allocator cannot give now (the
/// monitor and the EPT need a few MiB more, which the allocation itself
/// checks).
fn enough_memory(config: &GuestConfig) -> Result<(), BackendError> {
    let free = memory::with_frames(|frames| frames.free_bytes());
    let wanted = config.memory_mib << 20;
    if wanted > free {
        return Err(BackendError::OutOfResources(format!(
            "not enough free memory for guest '{}': {} MiB wanted, {} MiB free",
            config.name,
            config.memory_mib,
            free >> 20
        )));
    }
    Ok(())
}

fn api_state(guest: &Guest) -> model::GuestState {
    match &guest.state {
        GuestState::Running if guest.shutdown_requested => model::GuestState::ShuttingDown,
        GuestState::Running | GuestState::Restarting { .. } => model::GuestState::Running,
        GuestState::Paused => model::GuestState::Paused,
        GuestState::Ended { .. } => model::GuestState::Stopped,
    }
}

fn summary(guest: &Guest) -> GuestSummary {
    GuestSummary {
        name: guest.name.clone(),
        tenant: guest.config().tenant.clone(),
        state: api_state(guest),
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
    let uploads = guest.uploads();
    GuestInfo {
        name: guest.name.clone(),
        tenant: config.tenant.clone(),
        state: api_state(guest),
        memory_mib: config.memory_mib,
        vcpus: guest.vcpu_count() as u32,
        nested_hvm: config.nested_hvm,
        kernel: Uploads::describe(uploads.kernel.as_ref(), Some(&config.kernel)),
        initrd: Uploads::describe(uploads.initrd.as_ref(), config.ramdisk.as_deref()),
        config: config.to_section_text(),
        stop_reason,
        uptime_ms: guest.uptime_ms(),
    }
}

fn draft_summary(draft: &Draft) -> GuestSummary {
    GuestSummary {
        name: draft.config.name.clone(),
        tenant: draft.config.tenant.clone(),
        state: model::GuestState::Created,
        memory_mib: draft.config.memory_mib,
        vcpus: draft.config.vcpus.max(1),
    }
}

fn draft_info(draft: &Draft) -> GuestInfo {
    let config = &draft.config;
    let kernel_module = (config.kernel != UPLOADED_KERNEL).then_some(config.kernel.as_str());
    GuestInfo {
        name: config.name.clone(),
        tenant: config.tenant.clone(),
        state: model::GuestState::Created,
        memory_mib: config.memory_mib,
        vcpus: config.vcpus.max(1),
        nested_hvm: config.nested_hvm,
        kernel: Uploads::describe(draft.uploads.kernel.as_ref(), kernel_module),
        initrd: Uploads::describe(draft.uploads.initrd.as_ref(), config.ramdisk.as_deref()),
        config: config.to_section_text(),
        stop_reason: None,
        uptime_ms: 0,
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
    let state = api_state(guest).as_str();
    BackendError::WrongState(format!("cannot {} guest '{}': it is {state}", action.as_str(), guest.name))
}

impl GuestBackend for GuestTable<'_> {
    fn guests(&self) -> Vec<GuestSummary> {
        self.guests.iter().map(summary).chain(self.api.drafts.iter().map(draft_summary)).collect()
    }

    fn owner(&self, name: &str) -> Option<Option<String>> {
        match self.find(name) {
            Some(guest) => Some(guest.config().tenant.clone()),
            None => self.draft(name).map(|draft| draft.config.tenant.clone()),
        }
    }

    fn guest(&self, name: &str) -> Option<GuestInfo> {
        match self.find(name) {
            Some(guest) => Some(info(guest)),
            None => self.draft(name).map(draft_info),
        }
    }

    fn create(&mut self, config: &str, tenant: Option<&str>) -> Result<GuestInfo, BackendError> {
        let config = parse_config(config, tenant)?;
        if self.find(&config.name).is_some() || self.draft(&config.name).is_some() {
            return Err(BackendError::NameTaken);
        }
        if self.guests.len() + self.api.drafts.len() >= MAX_GUESTS {
            return Err(BackendError::OutOfResources(format!(
                "this host keeps at most {MAX_GUESTS} guests: remove one first"
            )));
        }
        enough_memory(&config)?;
        log::info!("guest {}: defined over the control API ({} MiB)", config.name, config.memory_mib);
        let draft = Draft { config, uploads: Uploads::default() };
        let info = draft_info(&draft);
        self.api.drafts.push(draft);
        Ok(info)
    }

    fn upload(&mut self, name: &str, image: Image, bytes: &[u8]) -> Result<GuestInfo, BackendError> {
        if let Some(guest) = self.find(name) {
            let state = api_state(guest);
            return Err(BackendError::WrongState(format!(
                "guest '{name}' is {state}: images can only be uploaded before its first start"
            )));
        }
        let index =
            self.api.drafts.iter().position(|draft| draft.config.name == name).ok_or(BackendError::NoSuchGuest)?;
        // The old image stays until the new one is in place: a failed
        // upload loses nothing.
        let upload = Arc::new(Upload::new(bytes).map_err(BackendError::OutOfResources)?);
        let draft = &mut self.api.drafts[index];
        let what = match image {
            Image::Kernel => {
                draft.uploads.kernel = Some(upload);
                "kernel"
            }
            Image::Initrd => {
                draft.uploads.initrd = Some(upload);
                draft.config.ramdisk.get_or_insert_with(|| UPLOADED_INITRD.into());
                "initrd"
            }
        };
        log::info!("guest {name}: {what} uploaded ({} KiB)", bytes.len().div_ceil(1024));
        Ok(draft_info(draft))
    }

    fn act(&mut self, name: &str, action: Action) -> Result<GuestInfo, BackendError> {
        if let Some(index) = self.api.drafts.iter().position(|draft| draft.config.name == name) {
            return match action {
                Action::Start => self.start_draft(index),
                _ => Err(BackendError::WrongState(format!(
                    "cannot {} guest '{name}': it is created, not started yet",
                    action.as_str()
                ))),
            };
        }
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
            (Action::Start, GuestState::Ended { .. }) => {
                log::info!("guest {}: started over the control API", guest.name);
                guest.state = GuestState::Restarting { reason: "started over the control API".into(), requested: true };
            }
            // A paused guest takes the press when it is resumed.
            (Action::Shutdown, GuestState::Running | GuestState::Paused) => {
                log::info!("guest {}: power button pressed over the control API", guest.name);
                guest.press_power_button();
            }
            _ => return Err(wrong_state(guest, action)),
        }
        Ok(info(guest))
    }

    fn remove(&mut self, name: &str) -> Result<(), BackendError> {
        if let Some(index) = self.api.drafts.iter().position(|draft| draft.config.name == name) {
            self.api.drafts.remove(index);
            log::info!("guest {name}: removed (never started)");
            return Ok(());
        }
        let index = self.guests.iter().position(|guest| guest.name == name).ok_or(BackendError::NoSuchGuest)?;
        if self.guests[index].is_live() {
            let state = api_state(&self.guests[index]);
            return Err(BackendError::WrongState(format!("guest '{name}' is {state}: destroy it first")));
        }
        let guest = self.guests.remove(index);
        let ram_mib = guest.ram_mib();
        drop(guest);
        log::info!("guest {name}: removed, {ram_mib} MiB of RAM freed with its monitor and images");
        Ok(())
    }

    fn console(&self, name: &str, offset: u64, max_len: usize) -> Option<ConsoleChunk> {
        let Some(guest) = self.find(name) else {
            // A created guest has written nothing yet.
            return self.draft(name).map(|_| ConsoleChunk { start: 0, next: 0, data: Vec::new() });
        };
        let mut data = alloc::vec![0; max_len.min(MAX_CONSOLE_CHUNK)];
        let read = guest.console.read_from(offset, &mut data);
        data.truncate(read.len);
        Some(ConsoleChunk { start: read.offset, next: read.next_offset(), data })
    }

    fn stats(&self, name: &str) -> Option<GuestStats> {
        let Some(guest) = self.find(name) else {
            return self.draft(name).map(|draft| GuestStats {
                name: draft.config.name.clone(),
                uptime_ms: 0,
                exits: Vec::new(),
                monitor_memory_bytes: 0,
                ept02_pages: 0,
            });
        };
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
        let config = match self.find(name) {
            Some(guest) => guest.config(),
            None => &self.draft(name)?.config,
        };
        Some(NestedState { name: config.name.clone(), nested_hvm: config.nested_hvm, vcpus: Vec::new() })
    }

    fn host(&self) -> HostInfo {
        host_info(Some(self.vmx))
    }
}
