//! The control plane as the shim runs it: the control server (`matryoshka_control`) on the
//! shim's NIC, configured by the boot configuration's `[shim]` keys, polled by the shim.
//!
//! There are no interrupts: the server only moves when [`ControlPlane::poll`] is called, so
//! whoever runs the CPU calls it between guest time slices and while waiting. Each call does
//! a bounded amount of work.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use l0_shim::boot_info::BootInfo;
use l0_shim::net::control_setup::control_setup;
use l0_shim::net::{MacDisplay, Nic, NicCounters};
use log::{info, warn};
use matryoshka_config::ShimSettings;
use matryoshka_control::api::{BackendError, GuestBackend};
use matryoshka_control::model::{
    Action, ConsoleChunk, GuestInfo, GuestStats, GuestSummary, HostInfo, Image, NestedState,
};
use matryoshka_control::server::{Addressing, ControlServer, NetworkSetup, PollStatus};
use smoltcp::wire::IpCidr;
use vmx::capabilities::VmxCapabilities;
use vmx::controls::{PinBasedControls, SecondaryControls};

use crate::arch::cpu::{cpuid, rdrand, rdtsc};
use crate::kernel::boot::VERSION;
use crate::kernel::guest_api::{ApiGuests, GuestTable};
use crate::kernel::guests::Guest;
use crate::kernel::nic::{self, ShimNic};
use crate::kernel::{memory, tsc};

pub struct ControlPlane {
    server: ControlServer,
    /// The guests defined over the API and not started yet.
    api_guests: ApiGuests,
    nic: ShimNic,
    port: u16,
    /// What was last logged, so that changes are reported once.
    link_up: bool,
    address: Option<IpCidr>,
    reported: NicCounters,
}

impl ControlPlane {
    /// Finds the NIC and starts the server on it, or logs why there is no control plane.
    pub fn start(settings: &ShimSettings) -> Option<ControlPlane> {
        let setup = match control_setup(settings) {
            Ok(setup) => setup,
            Err(why) => {
                info!("off: {why}");
                return None;
            }
        };
        let found = match nic::probe() {
            Ok(found) => found,
            Err(why) => {
                warn!("off: {why}");
                return None;
            }
        };
        let mut nic = found.nic;
        let random_seed = rdrand().unwrap_or_else(|| {
            info!("no RDRAND; TCP initial sequence numbers are seeded from the TSC");
            rdtsc()
        });
        info!(
            "{} at {} (registers at {:#x}), MAC {}, link {}",
            nic.model_name(),
            found.function.address,
            found.registers_phys,
            MacDisplay(nic.mac_address()),
            if nic.link_up() { "up" } else { "down (yet)" },
        );
        let addressing = match setup.addressing {
            Addressing::Dhcp => "DHCP".to_string(),
            Addressing::Static { address, gateway: Some(gateway) } => format!("{address}, gateway {gateway}"),
            Addressing::Static { address, gateway: None } => format!("{address}"),
        };
        info!(
            "port {}, address by {addressing}, {} admin and {} tenant token(s)",
            setup.server.port, setup.admin_tokens, setup.tenant_tokens
        );
        let network = NetworkSetup { mac: nic.mac_address(), addressing: setup.addressing, random_seed };
        let server = ControlServer::new(setup.server, network, &mut nic, setup.tokens, tsc::now_ms());
        let link_up = nic.link_up();
        let mut plane = ControlPlane {
            server,
            api_guests: ApiGuests::default(),
            nic,
            port: setup.server.port,
            link_up,
            address: None,
            reported: NicCounters::default(),
        };
        plane.report_changes();
        Some(plane)
    }

    /// One bounded step: takes in what the NIC received, answers what it can, sends.
    /// `backend` is asked about guests for the requests that need them.
    pub fn poll(&mut self, backend: &mut dyn GuestBackend) -> PollStatus {
        let status = self.server.poll(tsc::now_ms(), &mut self.nic, backend);
        self.report_changes();
        status
    }

    /// [`Self::poll`] with the guest table as the back end.
    pub fn poll_guests(
        &mut self,
        guests: &mut Vec<Guest>,
        boot: &BootInfo,
        vmx: &'static VmxCapabilities,
    ) -> PollStatus {
        let mut table = GuestTable::new(guests, &mut self.api_guests, boot, vmx);
        let status = self.server.poll(tsc::now_ms(), &mut self.nic, &mut table);
        self.report_changes();
        status
    }

    /// Serves requests while no guest runs, until one is started (over the
    /// API) or the machine is switched off.
    pub fn serve_until_a_guest_runs(
        &mut self,
        guests: &mut Vec<Guest>,
        boot: &BootInfo,
        vmx: &'static VmxCapabilities,
    ) {
        info!("serving until a guest is started or the machine is switched off");
        while !guests.iter().any(Guest::is_live) {
            let status = self.poll_guests(guests, boot, vmx);
            if !status.more_work {
                tsc::wait_us(IDLE_POLL_US);
            }
        }
    }

    /// Serves requests until the machine is switched off. While idle it still polls every
    /// [`IDLE_POLL_US`]: frames arrive without an interrupt to say so.
    pub fn serve_forever(&mut self, backend: &mut dyn GuestBackend) -> ! {
        info!("serving until the machine is switched off");
        loop {
            let status = self.poll(backend);
            if !status.more_work {
                tsc::wait_us(IDLE_POLL_US);
            }
        }
    }

    /// Logs the link and the address when they change (DHCP sets the address later), and
    /// frames the NIC mishandled since the last report.
    fn report_changes(&mut self) {
        let counters = self.nic.counters();
        let faults = |c: &NicCounters| (c.rx_malformed, c.tx_errors);
        if faults(&counters) != faults(&self.reported) {
            warn!(
                "the NIC filled {} receive descriptor(s) wrongly and failed to send {} frame(s) so far",
                counters.rx_malformed, counters.tx_errors
            );
        }
        self.reported = counters;
        let link_up = self.nic.link_up();
        if link_up != self.link_up {
            self.link_up = link_up;
            info!("link {}", if link_up { "up" } else { "down" });
        }
        let address = self.server.stack().0.ip_addrs().first().copied();
        if address != self.address {
            self.address = address;
            match address {
                Some(cidr) => info!("listening on {}:{}", cidr.address(), self.port),
                None => info!("no address (waiting for DHCP)"),
            }
        }
    }
}

/// How long the idle loop waits between polls: short against a network round trip
/// (~300 us through QEMU's user network), long enough not to spin on the registers.
const IDLE_POLL_US: u32 = 100;

/// The host as the control API describes it. `vmx` is `None` when VMX could not be
/// enabled.
pub fn host_info(vmx: Option<&VmxCapabilities>) -> HostInfo {
    let (total_memory_bytes, free_memory_bytes) =
        memory::with_frames(|frames| (frames.managed_bytes(), frames.free_bytes()));
    HostInfo {
        version: VERSION.into(),
        cpu_vendor: cpu_vendor(),
        cpu_model: cpu_model(),
        // The shim runs on the boot CPU only.
        logical_cpus: 1,
        vmx_features: vmx.map(vmx_features).unwrap_or_default(),
        total_memory_bytes,
        free_memory_bytes,
        uptime_ms: tsc::now_ms(),
    }
}

fn cpu_vendor() -> String {
    let leaf = cpuid(0, 0);
    let bytes: Vec<u8> = [leaf.ebx, leaf.edx, leaf.ecx].iter().flat_map(|r| r.to_le_bytes()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The brand string (CPUID 0x80000002-4), or "unknown" on CPUs without one.
fn cpu_model() -> String {
    if cpuid(0x8000_0000, 0).eax < 0x8000_0004 {
        return "unknown".into();
    }
    let bytes: Vec<u8> = (0x8000_0002..=0x8000_0004)
        .flat_map(|leaf| {
            let r = cpuid(leaf, 0);
            [r.eax, r.ebx, r.ecx, r.edx]
        })
        .flat_map(u32::to_le_bytes)
        .take_while(|&byte| byte != 0)
        .collect();
    String::from_utf8_lossy(&bytes).trim().into()
}

/// The secondary controls and the preemption timer the CPU offers, named as the VMX
/// vocabulary names them ("unrestricted-guest" becomes "unrestricted_guest").
fn vmx_features(capabilities: &VmxCapabilities) -> Vec<String> {
    let mut features: Vec<String> = SecondaryControls::NAMES
        .iter()
        .filter(|(bits, _)| capabilities.secondary.supports(*bits))
        .map(|(_, name)| name.replace('-', "_"))
        .collect();
    if capabilities.pin_based.supports(PinBasedControls::PREEMPTION_TIMER.bits()) {
        features.push("preemption_timer".into());
    }
    features
}

/// The back end of a shim that runs no guests (without VMX, or once its guests have
/// ended): the host is there to ask about, guests are not.
pub struct NoGuests {
    /// Why no guest can be created, for the answer to a create request.
    pub reason: String,
    pub vmx: Option<&'static VmxCapabilities>,
}

impl GuestBackend for NoGuests {
    fn guests(&self) -> Vec<GuestSummary> {
        Vec::new()
    }

    fn owner(&self, _name: &str) -> Option<Option<String>> {
        None
    }

    fn guest(&self, _name: &str) -> Option<GuestInfo> {
        None
    }

    fn create(&mut self, _config: &str, _tenant: Option<&str>) -> Result<GuestInfo, BackendError> {
        Err(BackendError::Unsupported(format!("this shim runs no guests: {}", self.reason)))
    }

    fn upload(&mut self, _name: &str, _image: Image, _bytes: &[u8]) -> Result<GuestInfo, BackendError> {
        Err(BackendError::NoSuchGuest)
    }

    fn act(&mut self, _name: &str, _action: Action) -> Result<GuestInfo, BackendError> {
        Err(BackendError::NoSuchGuest)
    }

    fn remove(&mut self, _name: &str) -> Result<(), BackendError> {
        Err(BackendError::NoSuchGuest)
    }

    fn console(&self, _name: &str, _offset: u64, _max_len: usize) -> Option<ConsoleChunk> {
        None
    }

    fn stats(&self, _name: &str) -> Option<GuestStats> {
        None
    }

    fn nested_state(&self, _name: &str) -> Option<NestedState> {
        None
    }

    fn host(&self) -> HostInfo {
        host_info(self.vmx)
    }
}
