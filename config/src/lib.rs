#![no_std]
// The user's reference for the file format is FORMAT.md, shown here too so
// that the two cannot drift apart.
#![doc = include_str!("../FORMAT.md")]
//!
//! # Reading a file
//!
//! [`parse`] never fails and never panics, whatever the text: it returns the
//! settings it could read, with every problem it found. A bad `[shim]` key
//! falls back to its default; a guest with any error is left out of
//! [`BootConfig::guests`] and listed in [`Parsed::rejected_guests`], so the
//! other guests still start.
//!
//! ```
//! let text = "
//! [shim]
//! tokens = ['role=admin,secret=correct-horse-battery']
//!
//! [guest]
//! name = 'web'
//! memory = 2048
//! kernel = 'web-kernel'
//! cpuid = ['0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']
//!
//! [guest]
//! name = 'db'
//! memory = 0
//! kernel = 'db-kernel'
//! ";
//! let parsed = matryoshka_config::parse("boot.cfg", text);
//! assert_eq!(parsed.config.guests.len(), 1);
//! assert_eq!(parsed.config.guests[0].name, "web");
//! assert_eq!(parsed.rejected_guests[0].name.as_deref(), Some("db"));
//! assert_eq!(
//!     parsed.errors[0].to_string(),
//!     "boot.cfg:13: key 'memory': expected a number of MiB from 1 to 1048576, got 0"
//! );
//! ```

extern crate alloc;
#[cfg(test)]
extern crate std;

mod cpuid;
mod fields;
mod guest;
mod lexer;
mod parser;
mod render;
mod report;
mod shim;
#[cfg(test)]
mod tests;

pub use cpuid::{CpuidMask, CpuidPolicy, CpuidRegister, MaskBit, RegisterMask};
pub use guest::{GuestConfig, LifecycleAction, RejectedGuest, MAX_MEMORY_MIB, MAX_NAME_LEN, MAX_VCPUS};
pub use report::ConfigError;
pub use shim::{
    AccessToken, LogLevel, NetworkConfig, ShimSettings, TokenScope, DEFAULT_CONTROL_PORT, MAX_SECRET_LEN,
    MIN_SECRET_LEN,
};

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use parser::{Section, SectionKind};
use report::{quoted, Report};

/// Everything the shim needs to boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootConfig {
    pub shim: ShimSettings,
    /// The valid guests, in file order.
    pub guests: Vec<GuestConfig>,
}

/// The result of reading a file: what was valid, and what was not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub config: BootConfig,
    /// Every error, in line order.
    pub errors: Vec<ConfigError>,
    /// Things that are accepted but probably not what the user meant, in line order.
    pub warnings: Vec<ConfigError>,
    /// The guests left out of `config.guests` because of errors, in file order.
    pub rejected_guests: Vec<RejectedGuest>,
}

impl Parsed {
    /// Whether the file had no error at all.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Reads a boot configuration. `file_name` only labels the messages.
pub fn parse(file_name: &str, text: &str) -> Parsed {
    let mut report = Report::new(file_name);
    let sections = parser::parse_sections(text, &mut report);
    let has_headers = sections.len() > 1;

    let mut shim_entries = Vec::new();
    let mut guest_sections: Vec<&Section> = Vec::new();
    for section in &sections {
        match section.kind {
            SectionKind::BeforeFirstHeader if has_headers => {
                for entry in section.entries.iter().filter(|entry| entry.value.is_some()) {
                    let message =
                        format!("key {} is outside a section: put it under [shim] or [guest]", quoted(&entry.key));
                    report.error(entry.line, Some(&entry.key), message);
                }
            }
            // A file without headers is an xl.cfg file: one guest.
            SectionKind::BeforeFirstHeader => {
                if section.entries.is_empty() && section.syntax_errors == 0 {
                    report.warn(1, None, "the file sets nothing: no guest will start");
                } else {
                    guest_sections.push(section);
                }
            }
            SectionKind::Shim => shim_entries.extend(&section.entries),
            SectionKind::Guest => guest_sections.push(section),
            SectionKind::Ignored => {}
        }
    }
    if has_headers && guest_sections.is_empty() {
        report.warn(1, None, "the file has no [guest] section: no guest will start");
    }

    let shim = shim::read_shim(shim_entries, &mut report);
    let mut names_in_use = BTreeMap::new();
    let mut guests = Vec::new();
    let mut rejected_guests = Vec::new();
    for section in guest_sections {
        match guest::read_guest(section, &mut report, &mut names_in_use, &shim.tokens) {
            Ok(guest) => guests.push(guest),
            Err(rejected) => rejected_guests.push(rejected),
        }
    }

    let Report { mut errors, mut warnings, .. } = report;
    // Stable, so several messages on one line keep the order they were found in.
    errors.sort_by_key(|error| error.line);
    warnings.sort_by_key(|warning| warning.line);
    Parsed { config: BootConfig { shim, guests }, errors, warnings, rejected_guests }
}
