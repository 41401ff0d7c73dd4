//! A hypervisor stand-in with the behaviour the API promises (states, console ring, images),
//! for tests here and in netctl.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use crate::api::{BackendError, GuestBackend};
use crate::model::{
    Action, ConsoleChunk, ExitCount, GuestInfo, GuestState, GuestStats, GuestSummary, HostInfo, Image, NestedState,
    VcpuNestedState, Vmcs12Field,
};

struct FakeGuest {
    info: GuestInfo,
    console: VecDeque<u8>,
    /// Offset of `console[0]`: every byte ever written before it has been overwritten.
    console_base: u64,
    kernel: Option<Vec<u8>>,
    exits: Vec<ExitCount>,
}

/// The fake host's free memory: a guest with more cannot start (507).
pub const FAKE_FREE_MEMORY_MIB: u64 = 512;
/// The largest image the fake takes (413).
pub const FAKE_MAX_IMAGE_BYTES: usize = 1 << 20;

pub struct FakeBackend {
    guests: Vec<FakeGuest>,
    console_capacity: usize,
    pub uptime_ms: u64,
}

impl Default for FakeBackend {
    fn default() -> Self {
        FakeBackend::new(4096)
    }
}

impl FakeBackend {
    pub fn new(console_capacity: usize) -> FakeBackend {
        FakeBackend { guests: Vec::new(), console_capacity, uptime_ms: 0 }
    }

    /// A running guest, as if from the boot configuration.
    pub fn with_guest(mut self, name: &str, tenant: Option<&str>) -> FakeBackend {
        let config = format!("name = \"{name}\"\nmemory = 64\nkernel = \"bzImage\"\n");
        let mut guest = fake_guest(parse_fake_config(&config).expect("valid"), tenant, &config);
        guest.info.state = GuestState::Running;
        guest.info.kernel = Some("module bzImage".into());
        self.guests.push(guest);
        self
    }

    /// The guest writes to its console; the ring keeps the newest `console_capacity` bytes.
    pub fn write_console(&mut self, name: &str, bytes: &[u8]) {
        let capacity = self.console_capacity;
        let guest = self.find_mut(name).expect("known guest");
        for &byte in bytes {
            if guest.console.len() == capacity {
                guest.console.pop_front();
                guest.console_base += 1;
            }
            guest.console.push_back(byte);
        }
    }

    pub fn count_exit(&mut self, name: &str, reason: &str, l2: bool) {
        let guest = self.find_mut(name).expect("known guest");
        let entry = match guest.exits.iter().position(|e| e.reason == reason) {
            Some(index) => &mut guest.exits[index],
            None => {
                guest.exits.push(ExitCount { reason: reason.into(), l1: 0, l2: 0 });
                guest.exits.last_mut().expect("just pushed")
            }
        };
        if l2 {
            entry.l2 += 1;
        } else {
            entry.l1 += 1;
        }
    }

    pub fn state(&self, name: &str) -> Option<GuestState> {
        self.find(name).map(|g| g.info.state)
    }

    pub fn kernel_bytes(&self, name: &str) -> Option<&[u8]> {
        self.find(name)?.kernel.as_deref()
    }

    pub fn stop(&mut self, name: &str, reason: &str) {
        let guest = self.find_mut(name).expect("known guest");
        guest.info.state = GuestState::Stopped;
        guest.info.stop_reason = Some(reason.into());
    }

    fn find(&self, name: &str) -> Option<&FakeGuest> {
        self.guests.iter().find(|g| g.info.name == name)
    }

    fn find_mut(&mut self, name: &str) -> Option<&mut FakeGuest> {
        self.guests.iter_mut().find(|g| g.info.name == name)
    }
}

struct FakeConfig {
    name: String,
    memory_mib: u64,
    vcpus: u32,
    nested_hvm: bool,
    kernel: Option<String>,
}

/// Just enough of the boot configuration's syntax for tests: `key = value` lines.
fn parse_fake_config(text: &str) -> Result<FakeConfig, Vec<String>> {
    let mut config = FakeConfig { name: String::new(), memory_mib: 0, vcpus: 1, nested_hvm: false, kernel: None };
    let mut errors = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            errors.push(format!("{number}: expected KEY = VALUE"));
            continue;
        };
        let (key, value) = (key.trim(), value.trim().trim_matches('"'));
        match key {
            "name" => config.name = value.to_string(),
            "memory" => match value.parse() {
                Ok(mib) if mib > 0 => config.memory_mib = mib,
                _ => errors.push(format!("{number}: key 'memory': expected MiB, a number above 0")),
            },
            "vcpus" => match value.parse() {
                Ok(n) if (1..=64).contains(&n) => config.vcpus = n,
                _ => errors.push(format!("{number}: key 'vcpus': expected 1 to 64")),
            },
            "nestedhvm" => config.nested_hvm = value == "1",
            "kernel" => config.kernel = Some(value.to_string()),
            _ => errors.push(format!("{number}: key '{key}': unknown key")),
        }
    }
    if config.name.is_empty() {
        errors.push("key 'name': missing".into());
    }
    if config.memory_mib == 0 && errors.is_empty() {
        errors.push("key 'memory': missing".into());
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn fake_guest(config: FakeConfig, tenant: Option<&str>, text: &str) -> FakeGuest {
    FakeGuest {
        info: GuestInfo {
            name: config.name,
            tenant: tenant.map(String::from),
            state: GuestState::Created,
            memory_mib: config.memory_mib,
            vcpus: config.vcpus,
            nested_hvm: config.nested_hvm,
            kernel: config.kernel.map(|module| format!("module {module}")),
            initrd: None,
            config: text.to_string(),
            stop_reason: None,
            uptime_ms: 0,
        },
        console: VecDeque::new(),
        console_base: 0,
        kernel: None,
        exits: Vec::new(),
    }
}

impl GuestBackend for FakeBackend {
    fn guests(&self) -> Vec<GuestSummary> {
        self.guests.iter().map(|g| g.info.summary()).collect()
    }

    fn owner(&self, name: &str) -> Option<Option<String>> {
        self.find(name).map(|g| g.info.tenant.clone())
    }

    fn guest(&self, name: &str) -> Option<GuestInfo> {
        self.find(name).map(|g| g.info.clone())
    }

    fn create(&mut self, config: &str, tenant: Option<&str>) -> Result<GuestInfo, BackendError> {
        let parsed = parse_fake_config(config).map_err(BackendError::InvalidConfig)?;
        if self.find(&parsed.name).is_some() {
            return Err(BackendError::NameTaken);
        }
        let guest = fake_guest(parsed, tenant, config);
        let info = guest.info.clone();
        self.guests.push(guest);
        Ok(info)
    }

    fn upload(&mut self, name: &str, image: Image, bytes: &[u8]) -> Result<GuestInfo, BackendError> {
        let guest = self.find_mut(name).ok_or(BackendError::NoSuchGuest)?;
        if guest.info.state != GuestState::Created {
            return Err(BackendError::WrongState("images can only be replaced before the guest's first start".into()));
        }
        if bytes.len() > FAKE_MAX_IMAGE_BYTES {
            return Err(BackendError::TooLarge(format!("images are at most {FAKE_MAX_IMAGE_BYTES} bytes")));
        }
        let description = Some(format!("uploaded, {} bytes", bytes.len()));
        match image {
            Image::Kernel => {
                guest.info.kernel = description;
                guest.kernel = Some(bytes.to_vec());
            }
            Image::Initrd => guest.info.initrd = description,
        }
        Ok(guest.info.clone())
    }

    fn act(&mut self, name: &str, action: Action) -> Result<GuestInfo, BackendError> {
        let guest = self.find_mut(name).ok_or(BackendError::NoSuchGuest)?;
        let state = guest.info.state;
        let wrong = |why: &str| Err(BackendError::WrongState(format!("guest '{name}' is {state}: {why}")));
        guest.info.state = match (action, state) {
            (Action::Start, GuestState::Created | GuestState::Stopped) => {
                if guest.info.kernel.is_none() {
                    return Err(BackendError::WrongState(format!("guest '{name}' has no kernel")));
                }
                if guest.info.memory_mib > FAKE_FREE_MEMORY_MIB {
                    return Err(BackendError::OutOfResources(format!(
                        "not enough free memory for guest '{name}': {} MiB wanted, {FAKE_FREE_MEMORY_MIB} MiB free",
                        guest.info.memory_mib
                    )));
                }
                guest.info.stop_reason = None;
                GuestState::Running
            }
            (Action::Start, _) => return wrong("already started"),
            (Action::Pause, GuestState::Running) => GuestState::Paused,
            (Action::Pause, _) => return wrong("only a running guest can be paused"),
            (Action::Resume, GuestState::Paused) => GuestState::Running,
            (Action::Resume, _) => return wrong("only a paused guest can be resumed"),
            // Pressing the button again, as the shim allows.
            (Action::Shutdown, GuestState::Running | GuestState::ShuttingDown) => GuestState::ShuttingDown,
            (Action::Shutdown, _) => return wrong("only a running guest can be asked to shut down"),
            (Action::Destroy, GuestState::Created | GuestState::Stopped) => return wrong("it is not running"),
            (Action::Destroy, _) => {
                guest.info.stop_reason = Some("destroyed".into());
                GuestState::Stopped
            }
            (Action::Reset, GuestState::Running | GuestState::Paused) => GuestState::Running,
            (Action::Reset, _) => return wrong("only a running or paused guest can be reset"),
        };
        Ok(guest.info.clone())
    }

    fn remove(&mut self, name: &str) -> Result<(), BackendError> {
        let index = self.guests.iter().position(|g| g.info.name == name).ok_or(BackendError::NoSuchGuest)?;
        let state = self.guests[index].info.state;
        if !matches!(state, GuestState::Created | GuestState::Stopped) {
            return Err(BackendError::WrongState(format!("guest '{name}' is {state}; destroy it first")));
        }
        self.guests.remove(index);
        Ok(())
    }

    fn console(&self, name: &str, offset: u64, max_len: usize) -> Option<ConsoleChunk> {
        let guest = self.find(name)?;
        let end = guest.console_base + guest.console.len() as u64;
        let start = offset.clamp(guest.console_base, end);
        let skip = (start - guest.console_base) as usize;
        let data: Vec<u8> = guest.console.iter().skip(skip).take(max_len).copied().collect();
        Some(ConsoleChunk { start, next: start + data.len() as u64, data })
    }

    fn stats(&self, name: &str) -> Option<GuestStats> {
        let guest = self.find(name)?;
        Some(GuestStats {
            name: name.into(),
            uptime_ms: self.uptime_ms,
            exits: guest.exits.clone(),
            monitor_memory_bytes: 64 * 1024,
            ept02_pages: if guest.info.nested_hvm { 12 } else { 0 },
        })
    }

    fn nested_state(&self, name: &str) -> Option<NestedState> {
        let guest = self.find(name)?;
        let vcpus = (0..guest.info.vcpus)
            .map(|vcpu| VcpuNestedState {
                vcpu,
                vmxon: guest.info.nested_hvm,
                current_vmcs12: guest.info.nested_hvm.then_some(0x1000),
                launched: false,
                l2_active: false,
                fields: vec![Vmcs12Field { name: "guest_rip".into(), value: 0xfff0 }],
            })
            .collect();
        Some(NestedState { name: name.into(), nested_hvm: guest.info.nested_hvm, vcpus })
    }

    fn host(&self) -> HostInfo {
        HostInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            cpu_vendor: "GenuineIntel".into(),
            cpu_model: "fake".into(),
            logical_cpus: 1,
            vmx_features: vec!["ept".into(), "vpid".into(), "unrestricted_guest".into()],
            total_memory_bytes: 1 << 30,
            free_memory_bytes: FAKE_FREE_MEMORY_MIB << 20,
            uptime_ms: self.uptime_ms,
        }
    }
}
