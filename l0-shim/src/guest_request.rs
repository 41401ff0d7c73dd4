//! What the control API's requests about new guests mean to the shim: the
//! configuration text of a guest created over the API, and why its start
//! failed, as the API's answers.

use alloc::format;
use alloc::string::ToString;
use alloc::vec;

use matryoshka_config::{GuestConfig, ShimSettings};
use matryoshka_control::api::BackendError;

/// The module name of a kernel whose configuration names none (it is
/// uploaded), and of an uploaded initrd the configuration does not name.
pub const UPLOADED_KERNEL: &str = "uploaded-kernel";
pub const UPLOADED_INITRD: &str = "uploaded-initrd";
/// What configuration errors name as the file.
const CONFIG_LABEL: &str = "config";

/// Reads a guest's configuration sent over the API: the boot
/// configuration's guest keys, for one guest, `kernel` optional (it is
/// uploaded, and named [`UPLOADED_KERNEL`]). A tenant's guest belongs to
/// it: a `tenant` key naming another is refused.
pub fn parse_config(text: &str, tenant: Option<&str>) -> Result<GuestConfig, BackendError> {
    let mut parsed = matryoshka_config::parse(CONFIG_LABEL, text);
    let kernel_missing = |error: &matryoshka_config::ConfigError| {
        error.key.as_deref() == Some("kernel") && error.message.starts_with("key 'kernel' is missing")
    };
    if parsed.errors.iter().any(kernel_missing) {
        // Appended, so the lines the errors name stay the user's.
        parsed = matryoshka_config::parse(CONFIG_LABEL, &format!("{text}\nkernel = \"{UPLOADED_KERNEL}\"\n"));
    }
    if !parsed.errors.is_empty() {
        return Err(BackendError::InvalidConfig(parsed.errors.iter().map(ToString::to_string).collect()));
    }
    let refuse = |why: &str| Err(BackendError::InvalidConfig(vec![why.to_string()]));
    if parsed.config.shim != ShimSettings::default() {
        return refuse("[shim] settings belong in the boot configuration, not in a guest's");
    }
    let mut guests = parsed.config.guests;
    if guests.len() != 1 {
        return refuse("the text must define exactly one guest (name, memory, ...)");
    }
    let mut config = guests.remove(0);
    match (tenant, config.tenant.as_deref()) {
        (Some(own), Some(named)) if own != named => {
            let line = config.line;
            return Err(BackendError::InvalidConfig(vec![format!(
                "{CONFIG_LABEL}: key 'tenant': the guest would belong to '{named}', but it is created for '{own}' \
                 (section from line {line})"
            )]));
        }
        (Some(own), _) => config.tenant = Some(own.into()),
        (None, _) => {}
    }
    Ok(config)
}

/// The answer to a start that failed with `error` (from creating the
/// guest): 507 when memory ran short, 400 otherwise (its kernel, its
/// configuration).
pub fn start_failure(name: &str, error: &str) -> BackendError {
    let message = format!("cannot start guest '{name}': {error}");
    let short_of_memory = ["not enough free memory", "out of memory", "no free memory"];
    if short_of_memory.iter().any(|phrase| error.contains(phrase)) {
        BackendError::OutOfResources(message)
    } else {
        BackendError::Rejected(message)
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::String;

    use super::*;

    fn errors(result: Result<GuestConfig, BackendError>) -> String {
        match result {
            Err(BackendError::InvalidConfig(errors)) => errors.join("; "),
            other => panic!("not an invalid configuration: {other:?}"),
        }
    }

    #[test]
    fn a_config_without_kernel_gets_the_uploaded_one_and_the_callers_tenant() {
        let config = parse_config("name = 'web'\nmemory = 64\nvcpus = 2\n", Some("acme")).unwrap();
        assert_eq!((config.name.as_str(), config.memory_mib, config.vcpus), ("web", 64, 2));
        assert_eq!(config.kernel, UPLOADED_KERNEL);
        assert_eq!(config.tenant.as_deref(), Some("acme"));
        let named = parse_config("[guest]\nname = 'db'\nmemory = 16\nkernel = 'l1-test'\ntenant = 'x'\n", None);
        let named = named.unwrap();
        assert_eq!((named.kernel.as_str(), named.tenant.as_deref()), ("l1-test", Some("x")), "the admin's");
    }

    #[test]
    fn bad_keys_are_named_with_their_lines() {
        let text = errors(parse_config("name = 'web'\nmemory = lots\n", None));
        assert!(text.starts_with("config:2: key 'memory':"), "{text}");
        let text = errors(parse_config("name = 'web'\nmemory = 16\nfrobnicate = 1\n", None));
        assert!(text.contains("config:3: key 'frobnicate'"), "{text}");
        let text = errors(parse_config("memory = 16\n", None));
        assert!(text.contains("key 'name' is missing"), "{text}");
        assert!(!text.contains("kernel"), "the kernel may be uploaded: {text}");
    }

    #[test]
    fn one_guest_only_no_shim_keys_and_no_other_tenant() {
        let two = "[guest]\nname = 'a'\nmemory = 16\nkernel = 'k'\n[guest]\nname = 'b'\nmemory = 16\nkernel = 'k'\n";
        assert!(errors(parse_config(two, None)).contains("exactly one guest"));
        let shim = "[shim]\ncontrol_port = 9\n[guest]\nname = 'a'\nmemory = 16\n";
        assert!(errors(parse_config(shim, None)).contains("[shim] settings belong in the boot configuration"));
        let theirs = errors(parse_config("name = 'a'\nmemory = 16\ntenant = 'other'\n", Some("acme")));
        assert!(theirs.contains("key 'tenant'") && theirs.contains("'other'"), "{theirs}");
        assert!(errors(parse_config("", None)).contains("exactly one guest"));
    }

    #[test]
    fn start_failures_short_of_memory_are_507_and_the_rest_400() {
        let memory = start_failure("web", "not enough free memory for 64 MiB of guest RAM");
        assert_eq!(
            memory,
            BackendError::OutOfResources(
                "cannot start guest 'web': not enough free memory for 64 MiB of guest RAM".into()
            )
        );
        assert!(matches!(
            start_failure("web", "out of memory for the monitor's address space"),
            BackendError::OutOfResources(_)
        ));
        assert!(matches!(start_failure("web", "no free memory for a VMCS"), BackendError::OutOfResources(_)));
        let kernel = start_failure("web", "kernel 'uploaded-kernel': not a multiboot or Linux image");
        assert!(matches!(kernel, BackendError::Rejected(ref why) if why.contains("not a multiboot")), "{kernel:?}");
    }
}
