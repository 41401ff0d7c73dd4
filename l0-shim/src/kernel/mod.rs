//! The shim's kernel proper: safe Rust over the `arch` layer.

pub mod backtrace;
pub mod boot;
pub mod configuration;
pub mod console;
pub mod control_plane;
pub mod dma;
pub mod ept02;
pub mod guest_api;
pub mod guest_images;
pub mod guest_ram;
pub mod guests;
pub mod heap;
pub mod memory;
pub mod monitor;
pub mod monitor_channel;
pub mod msr_bitmap;
pub mod nic;
pub mod percpu;
pub mod shutdown;
pub mod traps;
pub mod tsc;
pub mod vcpu;
pub mod vmcs;
pub mod vmx_root;
pub mod vmx_smoke;
pub mod xsave;
