//! What the guest is shown: CPUID leaves and MSRs.
//!
//! Both are decided once per guest from the host, the guest's
//! configuration and the user's `cpuid` masks, then consulted on every
//! CPUID, RDMSR and WRMSR exit:
//!
//! - [`cpuid::GuestCpuid`] builds the guest's CPUID from the host's
//!   through an allow list, and answers each CPUID exit for a vCPU and its
//!   current state;
//! - [`msr::MsrPolicy`] derives from that CPUID which MSRs exist, and
//!   [`msr::MsrState`] (one per vCPU) decides each MSR access, returning
//!   what the exit handler must do.
//!
//! ```
//! use matryoshka_config::CpuidPolicy;
//! use monitor::policy::cpuid::{CpuidConfig, DynamicState, GuestCpuid, NativeSupport, DEFAULT_APIC_TIMER_KHZ};
//! use monitor::policy::msr::{MsrContext, MsrOutcome, MsrPolicy, MsrState, UnknownMsrAction, IA32_APIC_BASE};
//!
//! // A host that only knows leaf 0 and says "GenuineIntel".
//! let host = |leaf: u32, _subleaf: u32| match leaf {
//!     0 => [1, 0x756e_6547, 0x6c65_746e, 0x4965_6e69],
//!     _ => [0; 4],
//! };
//! let masks = CpuidPolicy::default();
//! let config = CpuidConfig {
//!     vcpus: 2,
//!     nested_hvm: false,
//!     masks: &masks,
//!     tsc_khz: 2_000_000,
//!     apic_timer_khz: DEFAULT_APIC_TIMER_KHZ,
//!     native: NativeSupport::ALL,
//! };
//! let cpuid = GuestCpuid::new(host, &config);
//! // vCPU 1 finds its APIC ID, and that it runs under a hypervisor.
//! let [_, ebx, ecx, _] = cpuid.query(1, 0, 1, DynamicState::AT_RESET);
//! assert_eq!(ebx >> 24, 1);
//! assert_ne!(ecx & 1 << 31, 0);
//!
//! let policy = MsrPolicy::new(UnknownMsrAction::InjectGp, &cpuid, None);
//! let ctx = MsrContext { policy: &policy, host_tsc: 0, tsc_offset: 0, vmx_capabilities: None };
//! let mut vcpu1 = MsrState::new(1);
//! assert_eq!(vcpu1.rdmsr(IA32_APIC_BASE, &ctx), MsrOutcome::Read(0xfee0_0800));
//! ```

pub mod cpuid;
pub mod msr;

#[cfg(test)]
pub(crate) mod test_hosts;
