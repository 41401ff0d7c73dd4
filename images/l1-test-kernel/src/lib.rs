//! Host-testable logic of the L1 test kernel: everything that needs no
//! privileged instruction lives here and is unit-tested with
//! `cargo test -p l1-test-kernel`. The kernel itself (`src/main.rs`, built
//! with `--features image`) reads the hardware and hands the raw values to
//! these modules.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod cmdline;
pub mod cpu_info;
pub mod madt;
pub mod memory_test;
pub use multiboot_kernel::multiboot;
pub mod rtc_time;
pub mod timing;
