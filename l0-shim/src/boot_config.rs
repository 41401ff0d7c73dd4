//! Checks of the boot configuration that need the boot loader's view: the
//! parser knows the file, only the shim knows which modules were loaded.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use matryoshka_config::{ConfigError, Parsed, RejectedGuest};

/// The boot module holding the monitor image.
pub const MONITOR_MODULE: &str = "matryoshka-monitor";

/// Rejects every guest whose `kernel` or `ramdisk` names no module a guest
/// may use, with an error naming the key and listing the ones it may. The
/// configuration file itself (it holds every tenant's token) and the
/// monitor image are never a guest's: whatever a guest names is mapped
/// into its monitor, which the guest may have taken over.
pub fn check_modules(parsed: &mut Parsed, file: &str, loaded: &[&str]) {
    let usable: Vec<&str> = loaded.iter().copied().filter(|name| *name != file && *name != MONITOR_MODULE).collect();
    let loaded = &usable[..];
    let available = if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") };
    let mut kept = Vec::with_capacity(parsed.config.guests.len());
    for guest in core::mem::take(&mut parsed.config.guests) {
        let references = [
            ("kernel", Some(&guest.kernel), guest.kernel_line),
            ("ramdisk", guest.ramdisk.as_ref(), guest.ramdisk_line.unwrap_or(guest.line)),
        ];
        let missing: Vec<(&str, String, u32)> = references
            .into_iter()
            .filter_map(|(key, name, line)| name.map(|name| (key, name, line)))
            .filter(|(_, name, _)| !loaded.contains(&name.as_str()))
            .map(|(key, name, line)| (key, name.clone(), line))
            .collect();
        if missing.is_empty() {
            kept.push(guest);
            continue;
        }
        for (key, name, line) in missing {
            parsed.errors.push(ConfigError {
                file: file.to_string(),
                line,
                key: Some(key.to_string()),
                message: format!(
                    "guest '{}': no boot module named '{name}' (modules a guest may use: {available})",
                    guest.name
                ),
            });
        }
        parsed.rejected_guests.push(RejectedGuest { name: Some(guest.name), line: guest.line });
    }
    parsed.config.guests = kept;
    parsed.errors.sort_by_key(|error| error.line);
    parsed.rejected_guests.sort_by_key(|guest| guest.line);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "
[guest]
name = \"web\"
memory = 128
kernel = \"vmlinuz\"
ramdisk = \"initrd\"

[guest]
name = \"db\"
memory = 128
kernel = \"vmlinuz\"
";

    #[test]
    fn guests_with_loaded_modules_are_kept() {
        let mut parsed = matryoshka_config::parse("lab.cfg", CONFIG);
        assert!(parsed.is_clean(), "{:?}", parsed.errors);
        check_modules(&mut parsed, "lab.cfg", &["lab.cfg", "vmlinuz", "initrd"]);
        assert!(parsed.is_clean());
        assert_eq!(parsed.config.guests.len(), 2);
    }

    #[test]
    fn a_missing_module_rejects_only_its_guest_and_names_key_and_modules() {
        let mut parsed = matryoshka_config::parse("lab.cfg", CONFIG);
        check_modules(&mut parsed, "lab.cfg", &["lab.cfg", "vmlinuz"]);
        assert_eq!(parsed.config.guests.len(), 1);
        assert_eq!(parsed.config.guests[0].name, "db");
        assert_eq!(parsed.rejected_guests.len(), 1);
        assert_eq!(parsed.rejected_guests[0].name.as_deref(), Some("web"));
        assert_eq!(parsed.errors.len(), 1);
        let message = parsed.errors[0].to_string();
        assert!(message.starts_with("lab.cfg:6: key 'ramdisk'"), "{message}");
        assert!(message.contains("no boot module named 'initrd' (modules a guest may use: vmlinuz)"), "{message}");
    }

    #[test]
    fn with_no_modules_every_guest_is_rejected() {
        let mut parsed = matryoshka_config::parse("lab.cfg", CONFIG);
        check_modules(&mut parsed, "lab.cfg", &[]);
        assert!(parsed.config.guests.is_empty());
        assert_eq!(parsed.rejected_guests.len(), 2);
        assert_eq!(parsed.errors.len(), 3);
        assert!(parsed.errors.iter().all(|error| error.message.contains("(modules a guest may use: none)")));
    }

    #[test]
    fn neither_the_configuration_nor_the_monitor_image_can_be_a_guests_module() {
        let text = "[guest]\nname = \"thief\"\nmemory = 16\nkernel = \"vmlinuz\"\nramdisk = \"lab.cfg\"\n\
                    [guest]\nname = \"forger\"\nmemory = 16\nkernel = \"matryoshka-monitor\"\n";
        let mut parsed = matryoshka_config::parse("lab.cfg", text);
        check_modules(&mut parsed, "lab.cfg", &["matryoshka-monitor", "lab.cfg", "vmlinuz"]);
        assert!(parsed.config.guests.is_empty());
        assert_eq!(parsed.errors.len(), 2);
        assert!(parsed.errors[0].message.contains("no boot module named 'lab.cfg' (modules a guest may use: vmlinuz)"));
        assert!(parsed.errors[1].message.contains("no boot module named 'matryoshka-monitor'"));
    }
}
