//! Loading the boot configuration from its boot module, and reporting on it.

use alloc::vec::Vec;

use l0_shim::boot_config;
use l0_shim::boot_info::BootInfo;
use l0_shim::boot_options::BootOptions;
use log::{error, info, warn};
use matryoshka_config::Parsed;

use crate::kernel::memory;

/// What became of the boot configuration.
pub enum Configuration {
    /// Read and parsed (it may still contain errors; see `Parsed::errors`).
    Loaded { file: &'static str, parsed: Parsed },
    /// No configuration was given: there are no guests to start.
    Absent,
    /// One was named or found but could not be read (already reported).
    Unreadable,
}

impl Configuration {
    pub fn is_clean(&self) -> bool {
        match self {
            Self::Loaded { parsed, .. } => parsed.is_clean(),
            Self::Absent => true,
            Self::Unreadable => false,
        }
    }
}

pub fn load(boot: &BootInfo, options: &BootOptions) -> Configuration {
    let module = match options.config_module {
        Some(name) => match boot.module(name) {
            Some(module) => module,
            None => {
                error!("config={name}: no boot module of that name (loaded: {})", module_names(boot).join(", "));
                return Configuration::Unreadable;
            }
        },
        None => match boot.modules.iter().find(|module| module.name.ends_with(".cfg")) {
            Some(module) => module,
            None => {
                info!("no boot configuration (no config= option and no module named *.cfg): no guests to start");
                return Configuration::Absent;
            }
        },
    };
    let bytes = memory::module_bytes(module);
    let text = match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            error!("{}: not UTF-8 text (bad byte at offset {})", module.name, error.valid_up_to());
            return Configuration::Unreadable;
        }
    };
    // The name outlives the boot information: modules stay loaded for good.
    let file: &'static str = alloc::boxed::Box::leak(module.name.clone().into_boxed_str());
    let mut parsed = matryoshka_config::parse(file, text);
    boot_config::check_modules(&mut parsed, file, &module_names(boot));

    for warning in &parsed.warnings {
        warn!("{warning}");
    }
    for problem in &parsed.errors {
        error!("{problem}");
    }
    info!(
        "boot configuration {file}: {} guest(s) valid, {} rejected, {} error(s), {} warning(s)",
        parsed.config.guests.len(),
        parsed.rejected_guests.len(),
        parsed.errors.len(),
        parsed.warnings.len()
    );
    for guest in &parsed.config.guests {
        info!(
            "guest {}: {} MiB, {} vCPU(s), kernel {}{}, nestedhvm={}",
            guest.name,
            guest.memory_mib,
            guest.vcpus,
            guest.kernel,
            guest.ramdisk.as_ref().map(|ramdisk| alloc::format!(", ramdisk {ramdisk}")).unwrap_or_default(),
            u8::from(guest.nested_hvm),
        );
    }
    Configuration::Loaded { file, parsed }
}

fn module_names(boot: &BootInfo) -> Vec<&str> {
    boot.modules.iter().map(|module| module.name.as_str()).collect()
}
