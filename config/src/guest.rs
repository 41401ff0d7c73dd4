//! The keys of a `[guest]` section: a subset of xl.cfg, with the values
//! Matryoshka cannot honour rejected by name instead of ignored.

use crate::cpuid::{read_cpuid_list, CpuidPolicy};
use crate::fields::{Fields, Lookup};
use crate::parser::{Section, Value};
use crate::report::{quoted, Report};
use crate::shim::{AccessToken, TokenScope};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

/// Largest `memory`: 1 TiB, in MiB.
pub const MAX_MEMORY_MIB: u64 = 1 << 20;
/// Largest `vcpus` and `maxvcpus`.
pub const MAX_VCPUS: u32 = 64;
/// Longest guest or tenant name.
pub const MAX_NAME_LEN: usize = 64;

/// One guest to start. Every accepted guest is an HVM guest with hardware
/// assisted paging (`type = "hvm"`, `hap = 1`): nothing else is accepted, so
/// neither is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    pub name: String,
    /// Line of the `[guest]` header (1 for a file without headers).
    pub line: u32,
    pub memory_mib: u64,
    /// vCPUs online at boot.
    pub vcpus: u32,
    /// vCPUs the guest may bring online later (`maxvcpus`, else `vcpus`).
    pub max_vcpus: u32,
    /// The boot module holding the kernel.
    pub kernel: String,
    /// Line of the `kernel` key, for errors found later (e.g. no such module).
    pub kernel_line: u32,
    /// The boot module holding the initial ramdisk.
    pub ramdisk: Option<String>,
    /// Line of the `ramdisk` key, when there is one.
    pub ramdisk_line: Option<u32>,
    /// Empty when none is given.
    pub cmdline: String,
    /// `nestedhvm`: whether the guest may itself run VMX guests.
    pub nested_hvm: bool,
    pub cpuid: CpuidPolicy,
    /// The tenant allowed to manage the guest; `None`: only the admin.
    pub tenant: Option<String>,
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
}

/// What happens when a guest powers off, reboots or crashes (xl's `on_*`
/// keys, minus the actions that need a toolstack: rename, coredump, soft reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LifecycleAction {
    /// The guest is torn down and its memory freed.
    Destroy,
    /// The guest is torn down and started again from its configuration.
    Restart,
    /// The guest is kept, stopped, so it can be inspected.
    Preserve,
}

impl LifecycleAction {
    pub fn name(self) -> &'static str {
        match self {
            LifecycleAction::Destroy => "destroy",
            LifecycleAction::Restart => "restart",
            LifecycleAction::Preserve => "preserve",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [LifecycleAction::Destroy, LifecycleAction::Restart, LifecycleAction::Preserve]
            .into_iter()
            .find(|action| action.name() == name)
    }
}

/// A `[guest]` section that had an error; the guest is not started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedGuest {
    /// The guest's name, if it had a valid one.
    pub name: Option<String>,
    /// Line of the `[guest]` header (1 for a file without headers).
    pub line: u32,
}

/// Guest and tenant names: they end up in logs, commands and paths.
pub(crate) fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

pub(crate) const NAME_RULE: &str = "use 1 to 64 characters of A-Z a-z 0-9 _ . -";

/// Reads one guest section. `names_in_use` maps each guest name seen so far
/// to the line of its `name` key, to find duplicates across sections.
pub(crate) fn read_guest(
    section: &Section,
    report: &mut Report,
    names_in_use: &mut BTreeMap<String, u32>,
    tokens: &[AccessToken],
) -> Result<GuestConfig, RejectedGuest> {
    let mut fields = Fields::new(&section.entries, report);
    let name = read_name(&mut fields, section.line, names_in_use);
    check_guest_type(&mut fields);
    let memory_mib = read_memory(&mut fields, section.line);
    let (vcpus, max_vcpus) = read_vcpus(&mut fields);
    let kernel = read_module_name(&mut fields, "kernel");
    let kernel_line = lookup_line(&kernel).unwrap_or(section.line);
    let kernel = fields.require(kernel, "kernel", section.line, "every guest needs kernel = \"boot module name\"");
    let ramdisk = read_module_name(&mut fields, "ramdisk");
    let ramdisk_line = lookup_line(&ramdisk);
    let ramdisk = ramdisk.value();
    let cmdline = read_cmdline(&mut fields);
    check_hap(&mut fields);
    let nested_hvm = fields.boolean("nestedhvm").value().unwrap_or(false);
    let cpuid = read_cpuid(&mut fields);
    let tenant = read_tenant(&mut fields, tokens);
    let on_poweroff = read_action(&mut fields, "on_poweroff", LifecycleAction::Destroy);
    let on_reboot = read_action(&mut fields, "on_reboot", LifecycleAction::Restart);
    let on_crash = read_action(&mut fields, "on_crash", LifecycleAction::Destroy);
    let had_errors = fields.finish("for a guest") || section.syntax_errors > 0;

    match (name, memory_mib, kernel) {
        (Some(name), Some(memory_mib), Some(kernel)) if !had_errors => Ok(GuestConfig {
            name,
            line: section.line,
            memory_mib,
            vcpus,
            max_vcpus,
            kernel: kernel.into(),
            kernel_line,
            ramdisk: ramdisk.map(Into::into),
            ramdisk_line,
            cmdline,
            nested_hvm,
            cpuid,
            tenant,
            on_poweroff,
            on_reboot,
            on_crash,
        }),
        (name, ..) => Err(RejectedGuest { name, line: section.line }),
    }
}

fn read_name(fields: &mut Fields, section_line: u32, names_in_use: &mut BTreeMap<String, u32>) -> Option<String> {
    let lookup = fields.text("name", "the guest's name in quotes");
    let Lookup::Found { value: name, line } = lookup else {
        fields.require(lookup, "name", section_line, "every guest needs name = \"...\"");
        return None;
    };
    if !is_valid_name(name) {
        fields.error(line, "name", format!("guest name {} is not valid: {NAME_RULE}", quoted(name)));
        return None;
    }
    if let Some(first_line) = names_in_use.get(name) {
        fields.error(line, "name", format!("guest name '{name}' is already used on line {first_line}"));
    } else {
        names_in_use.insert(name.into(), line);
    }
    Some(name.into())
}

/// `type`, or xl's older `builder`: only HVM.
fn check_guest_type(fields: &mut Fields) {
    for key in ["type", "builder"] {
        if let Lookup::Found { value, line } = fields.text(key, "a string: \"hvm\"") {
            if value != "hvm" {
                let message = format!("{key} {} is not supported: Matryoshka runs HVM guests", quoted(value));
                fields.error(line, key, message);
            }
        }
    }
}

fn read_memory(fields: &mut Fields, section_line: u32) -> Option<u64> {
    let memory = fields.number("memory", "a number of MiB", 1..=MAX_MEMORY_MIB);
    let memory = fields.require(memory, "memory", section_line, "every guest needs memory = MiB");
    if let Lookup::Found { value: maxmem, line } = fields.number("maxmem", "a number of MiB", 1..=MAX_MEMORY_MIB) {
        if let Some(memory) = memory.filter(|memory| *memory != maxmem) {
            let message = format!(
                "maxmem ({maxmem}) differs from memory ({memory}): populate-on-demand is not supported \
                 (it is how an L1 admin can DoS L0 under Xen)"
            );
            fields.error(line, "maxmem", message);
        }
    }
    memory
}

fn lookup_line<T>(lookup: &Lookup<T>) -> Option<u32> {
    match lookup {
        Lookup::Found { line, .. } => Some(*line),
        _ => None,
    }
}

/// `kernel` and `ramdisk` name boot modules; no module has an empty name.
fn read_module_name<'e>(fields: &mut Fields<'e, '_>, key: &str) -> Lookup<&'e str> {
    match fields.text(key, "the name of a boot module in quotes") {
        Lookup::Found { value: "", line } => {
            fields.error(line, key, "expected the name of a boot module, got an empty string");
            Lookup::Invalid
        }
        other => other,
    }
}

/// `(vcpus, max_vcpus)`, defaulting to one vCPU.
fn read_vcpus(fields: &mut Fields) -> (u32, u32) {
    let range = 1..=u64::from(MAX_VCPUS);
    let vcpus = fields.number("vcpus", "a number of vCPUs", range.clone());
    let online = vcpus.value().and_then(|n| u32::try_from(n).ok()).unwrap_or(1);
    let max_vcpus = match fields.number("maxvcpus", "a number of vCPUs", range) {
        Lookup::Found { value, line } => {
            let max = u32::try_from(value).unwrap_or(MAX_VCPUS);
            if vcpus.value().is_some() && max < online {
                let message = format!("maxvcpus ({max}) is less than vcpus ({online})");
                fields.error(line, "maxvcpus", message);
            }
            max
        }
        _ => online,
    };
    (online, max_vcpus)
}

/// `cmdline`, or as xl builds it from its deprecated `root` and `extra`.
fn read_cmdline(fields: &mut Fields) -> String {
    let what = "a string in quotes";
    let cmdline = fields.text("cmdline", what).value();
    let root = fields.text("root", what);
    let extra = fields.text("extra", what);
    if let Some(cmdline) = cmdline {
        for (key, lookup) in [("root", root), ("extra", extra)] {
            if let Lookup::Found { line, .. } = lookup {
                fields.warn(line, key, format!("{key} is ignored because cmdline is given (as xl does)"));
            }
        }
        return cmdline.into();
    }
    match (root.value(), extra.value()) {
        (Some(root), Some(extra)) => format!("root={root} {extra}"),
        (Some(root), None) => format!("root={root}"),
        (None, Some(extra)) => extra.into(),
        (None, None) => String::new(),
    }
}

fn check_hap(fields: &mut Fields) {
    if let Lookup::Found { value: false, line } = fields.boolean("hap") {
        let message = "hap=0 (shadow paging for this guest) is not supported: Matryoshka needs EPT (hap=1)";
        fields.error(line, "hap", message);
    }
}

fn read_cpuid(fields: &mut Fields) -> CpuidPolicy {
    match fields.take("cpuid") {
        Lookup::Found { value: Value::List(items), line } => {
            read_cpuid_list(items, |message| fields.error(line, "cpuid", message))
        }
        Lookup::Found { value: Value::Text(_), line } => {
            let message = "the libxl cpuid string syntax is not supported; use the list form ['0x1:ecx=...']";
            fields.error(line, "cpuid", message);
            CpuidPolicy::default()
        }
        Lookup::Found { value, line } => {
            let message = format!("expected a list like ['0x1:ecx=...'], got {}", value.describe());
            fields.error(line, "cpuid", message);
            CpuidPolicy::default()
        }
        Lookup::Absent | Lookup::Invalid => CpuidPolicy::default(),
    }
}

fn read_tenant(fields: &mut Fields, tokens: &[AccessToken]) -> Option<String> {
    let Lookup::Found { value: tenant, line } = fields.text("tenant", "a tenant name in quotes") else {
        return None;
    };
    if !is_valid_name(tenant) {
        fields.error(line, "tenant", format!("tenant name {} is not valid: {NAME_RULE}", quoted(tenant)));
        return None;
    }
    // Allowed, since the admin can still manage the guest, but more likely a
    // typo in the guest's tenant or in the token's.
    let has_token = tokens.iter().any(|token| matches!(&token.scope, TokenScope::Tenant(name) if name == tenant));
    if !has_token {
        let message =
            format!("no token in [shim] tokens is for tenant '{tenant}': only the admin can manage this guest");
        fields.warn(line, "tenant", message);
    }
    Some(tenant.into())
}

fn read_action(fields: &mut Fields, key: &str, default: LifecycleAction) -> LifecycleAction {
    let Lookup::Found { value, line } = fields.text(key, "\"destroy\", \"restart\" or \"preserve\"") else {
        return default;
    };
    LifecycleAction::from_name(value).unwrap_or_else(|| {
        let message = format!("{key} {} is not supported: use destroy, restart or preserve", quoted(value));
        fields.error(line, key, message);
        default
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{guest_error, minimal_guest, only_guest, single_error, FILE};
    use crate::{parse, CpuidRegister};
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn defaults() {
        let guest = only_guest(&minimal_guest(""));
        assert_eq!(
            guest,
            GuestConfig {
                name: "vm".into(),
                line: 1,
                memory_mib: 512,
                vcpus: 1,
                max_vcpus: 1,
                kernel: "vmlinuz".into(),
                kernel_line: 3,
                ramdisk: None,
                ramdisk_line: None,
                cmdline: String::new(),
                nested_hvm: false,
                cpuid: CpuidPolicy::default(),
                tenant: None,
                on_poweroff: LifecycleAction::Destroy,
                on_reboot: LifecycleAction::Restart,
                on_crash: LifecycleAction::Destroy,
            }
        );
    }

    #[test]
    fn every_key_set() {
        let text = "[shim]\ntokens = ['tenant=blue,secret=blue-secret-0123456789']\n[guest]\n\
            name = 'Guest_1.a-b'\ntype = 'hvm'\nbuilder = \"hvm\"\nmemory = 2048\nmaxmem = 2048\n\
            vcpus = 3\nmaxvcpus = 64\nkernel = 'k'\nramdisk = 'r'\ncmdline = 'console=ttyS0'\n\
            hap = 1\nnestedhvm = 1\ncpuid = ['0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']\ntenant = 'blue'\n\
            on_poweroff = 'preserve'\non_reboot = 'destroy'\non_crash = 'restart'\n";
        let parsed = parse(FILE, text);
        assert!(parsed.errors.is_empty() && parsed.warnings.is_empty(), "{parsed:#?}");
        let guest = &parsed.config.guests[0];
        assert_eq!(guest.name, "Guest_1.a-b");
        assert_eq!(guest.line, 3);
        assert_eq!((guest.memory_mib, guest.vcpus, guest.max_vcpus), (2048, 3, 64));
        assert_eq!((guest.kernel.as_str(), guest.ramdisk.as_deref()), ("k", Some("r")));
        assert_eq!((guest.kernel_line, guest.ramdisk_line), (11, Some(12)));
        assert_eq!(guest.cmdline, "console=ttyS0");
        assert!(guest.nested_hvm);
        assert_eq!(guest.cpuid.mask_for(1, 0).unwrap().apply(CpuidRegister::Ecx, 0, u32::MAX), 0x7fff_ffff);
        assert_eq!(guest.tenant.as_deref(), Some("blue"));
        assert_eq!(
            (guest.on_poweroff, guest.on_reboot, guest.on_crash),
            (LifecycleAction::Preserve, LifecycleAction::Destroy, LifecycleAction::Restart)
        );
    }

    #[test]
    fn name_is_required_and_checked() {
        guest_error("memory = 1\nkernel = 'k'\n", 1, "name", "key 'name' is missing");
        // Reported at the [guest] header.
        guest_error("# vm\n[guest]\nmemory = 1\nkernel = 'k'\n", 2, "name", "is missing");
        let long = "n".repeat(65);
        for bad in ["", "a b", "vm/1", "é", long.as_str()] {
            let text = format!("name = '{bad}'\nmemory = 1\nkernel = 'k'\n");
            let parsed = guest_error(&text, 1, "name", "is not valid: use 1 to 64 characters of A-Z a-z 0-9 _ . -");
            assert_eq!(parsed.rejected_guests[0].name, None);
        }
        only_guest(&format!("name = '{}'\nmemory = 1\nkernel = 'k'\n", "n".repeat(64)));
        guest_error(
            "name = 5\nmemory = 1\nkernel = 'k'\n",
            1,
            "name",
            "expected the guest's name in quotes, got a number",
        );
    }

    #[test]
    fn names_are_unique_across_guests() {
        let text = "[guest]\nname = 'a'\nmemory = 1\nkernel = 'k'\n\n[guest]\nmemory = 1\nname = 'a'\nkernel = 'k'\n";
        let parsed = single_error(text, 8, Some("name"), "guest name 'a' is already used on line 2");
        assert_eq!(parsed.config.guests.len(), 1);
        assert_eq!(parsed.config.guests[0].line, 1);
        assert_eq!(parsed.rejected_guests, vec![RejectedGuest { name: Some("a".into()), line: 6 }]);
    }

    #[test]
    fn only_hvm_guests() {
        only_guest(&minimal_guest("type = 'hvm'\n"));
        only_guest(&minimal_guest("builder = 'hvm'\n"));
        for kind in ["pv", "pvh", "HVM"] {
            let text = minimal_guest(&format!("type = '{kind}'\n"));
            guest_error(&text, 4, "type", &format!("type '{kind}' is not supported: Matryoshka runs HVM guests"));
        }
        guest_error(&minimal_guest("builder = 'generic'\n"), 4, "builder", "builder 'generic' is not supported");
        guest_error(&minimal_guest("type = 1\n"), 4, "type", "expected a string: \"hvm\", got a number");
    }

    #[test]
    fn memory() {
        let without_memory = "name = 'vm'\nkernel = 'k'\n";
        guest_error(without_memory, 1, "memory", "key 'memory' is missing");
        for (value, fragment) in [
            ("0", "expected a number of MiB from 1 to 1048576, got 0"),
            ("1048577", "got 1048577"),
            ("'512'", "expected a number of MiB, got a string"),
            ("[512]", "got a list"),
        ] {
            guest_error(&format!("{without_memory}memory = {value}\n"), 3, "memory", fragment);
        }
        assert_eq!(only_guest(&format!("{without_memory}memory = 1\n")).memory_mib, 1);
        assert_eq!(only_guest(&format!("{without_memory}memory = 1048576\n")).memory_mib, MAX_MEMORY_MIB);
        assert_eq!(only_guest(&format!("{without_memory}memory = 0x400\n")).memory_mib, 1024);
    }

    #[test]
    fn maxmem_must_equal_memory() {
        only_guest(&minimal_guest("maxmem = 512\n"));
        let parsed = guest_error(&minimal_guest("maxmem = 1024\n"), 4, "maxmem", "");
        assert_eq!(
            parsed.errors[0].message,
            "maxmem (1024) differs from memory (512): populate-on-demand is not supported \
             (it is how an L1 admin can DoS L0 under Xen)"
        );
        guest_error(&minimal_guest("maxmem = 0\n"), 4, "maxmem", "expected a number of MiB from 1 to 1048576");
        // With a bad memory, only memory's error.
        guest_error("name = 'a'\nkernel = 'k'\nmemory = 0\nmaxmem = 5\n", 3, "memory", "got 0");
    }

    #[test]
    fn vcpus_and_maxvcpus() {
        let guest = only_guest(&minimal_guest("vcpus = 64\n"));
        assert_eq!((guest.vcpus, guest.max_vcpus), (64, 64));
        let guest = only_guest(&minimal_guest("maxvcpus = 8\n"));
        assert_eq!((guest.vcpus, guest.max_vcpus), (1, 8));
        let guest = only_guest(&minimal_guest("vcpus = 4\nmaxvcpus = 4\n"));
        assert_eq!((guest.vcpus, guest.max_vcpus), (4, 4));
        guest_error(&minimal_guest("vcpus = 0\n"), 4, "vcpus", "expected a number of vCPUs from 1 to 64, got 0");
        guest_error(&minimal_guest("vcpus = 65\n"), 4, "vcpus", "got 65");
        guest_error(&minimal_guest("maxvcpus = 65\n"), 4, "maxvcpus", "from 1 to 64, got 65");
        guest_error(&minimal_guest("vcpus = 4\nmaxvcpus = 2\n"), 5, "maxvcpus", "maxvcpus (2) is less than vcpus (4)");
        guest_error(&minimal_guest("vcpus = 'two'\n"), 4, "vcpus", "expected a number of vCPUs, got a string");
    }

    #[test]
    fn kernel_and_ramdisk() {
        guest_error("name = 'vm'\nmemory = 1\n", 1, "kernel", "key 'kernel' is missing");
        guest_error("name = 'vm'\nmemory = 1\nkernel = []\n", 3, "kernel", "expected the name of a boot module");
        guest_error("name = 'vm'\nmemory = 1\nkernel = ''\n", 3, "kernel", "got an empty string");
        guest_error(&minimal_guest("ramdisk = \"\"\n"), 4, "ramdisk", "got an empty string");
        assert_eq!(only_guest(&minimal_guest("ramdisk = 'initrd'\n")).ramdisk.as_deref(), Some("initrd"));
        guest_error(
            &minimal_guest("ramdisk = 1\n"),
            4,
            "ramdisk",
            "expected the name of a boot module in quotes, got a number",
        );
    }

    #[test]
    fn cmdline_from_root_and_extra_as_xl_builds_it() {
        assert_eq!(only_guest(&minimal_guest("root = '/dev/sda1'\n")).cmdline, "root=/dev/sda1");
        assert_eq!(only_guest(&minimal_guest("extra = 'quiet'\n")).cmdline, "quiet");
        assert_eq!(only_guest(&minimal_guest("extra = 'quiet'\nroot = '/dev/sda1'\n")).cmdline, "root=/dev/sda1 quiet");
        guest_error(&minimal_guest("cmdline = 7\n"), 4, "cmdline", "expected a string in quotes, got a number");
        guest_error(&minimal_guest("root = 7\n"), 4, "root", "expected a string");
    }

    #[test]
    fn cmdline_wins_over_root_and_extra_with_a_warning() {
        let parsed = parse(FILE, &minimal_guest("root = '/dev/sda1'\ncmdline = 'ro'\nextra = 'quiet'\n"));
        assert!(parsed.errors.is_empty());
        assert_eq!(parsed.config.guests[0].cmdline, "ro");
        let warnings: Vec<_> = parsed.warnings.iter().map(|w| (w.line, w.key.as_deref())).collect();
        assert_eq!(warnings, vec![(4, Some("root")), (6, Some("extra"))]);
        assert_eq!(
            parsed.warnings[0].to_string(),
            "t.cfg:4: key 'root': root is ignored because cmdline is given (as xl does)"
        );
    }

    #[test]
    fn hap_must_stay_on() {
        only_guest(&minimal_guest("hap = 1\n"));
        guest_error(
            &minimal_guest("hap = 0\n"),
            4,
            "hap",
            "hap=0 (shadow paging for this guest) is not supported: Matryoshka needs EPT (hap=1)",
        );
        guest_error(&minimal_guest("hap = 2\n"), 4, "hap", "expected 0 or 1, got 2");
    }

    #[test]
    fn nestedhvm_is_a_boolean() {
        assert!(!only_guest(&minimal_guest("nestedhvm = 0\n")).nested_hvm);
        assert!(only_guest(&minimal_guest("nestedhvm = 1\n")).nested_hvm);
        guest_error(&minimal_guest("nestedhvm = 2\n"), 4, "nestedhvm", "expected 0 or 1, got 2");
        guest_error(&minimal_guest("nestedhvm = 'yes'\n"), 4, "nestedhvm", "expected 0 or 1, got a string");
    }

    #[test]
    fn cpuid_takes_the_list_form_only() {
        let guest = only_guest(&minimal_guest("cpuid = []\n"));
        assert!(guest.cpuid.is_empty());
        guest_error(
            &minimal_guest("cpuid = \"host,tm=0\"\n"),
            4,
            "cpuid",
            "the libxl cpuid string syntax is not supported; use the list form ['0x1:ecx=...']",
        );
        guest_error(&minimal_guest("cpuid = 1\n"), 4, "cpuid", "expected a list like ['0x1:ecx=...'], got a number");
        guest_error(
            &minimal_guest("cpuid = ['0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']\n"),
            4,
            "cpuid",
            "cpuid entry 1 '0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': value for ecx has 31 characters, expected 32",
        );
    }

    #[test]
    fn every_bad_cpuid_entry_is_reported() {
        let text = minimal_guest(
            "cpuid = ['0x1:esi=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'zz:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',\n\
             '0x2:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', '2:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']\n",
        );
        let parsed = parse(FILE, &text);
        let messages: Vec<_> = parsed.errors.iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(messages.iter().all(|(line, _)| *line == 4));
        assert!(messages[0].1.contains("cpuid entry 1") && messages[0].1.contains("unknown register 'esi'"));
        assert!(messages[1].1.contains("cpuid entry 2") && messages[1].1.contains("bad leaf number 'zz'"));
        assert!(
            messages[2].1.contains("cpuid entry 4") && messages[2].1.contains("leaf 0x2 is already given by entry 3")
        );
    }

    #[test]
    fn tenant() {
        for bad in ["", "a b", &"t".repeat(65)] {
            let text = minimal_guest(&format!("tenant = '{bad}'\n"));
            guest_error(&text, 4, "tenant", "is not valid: use 1 to 64 characters");
        }
        // Without a token for it, the guest is accepted with a warning.
        let parsed = parse(FILE, &minimal_guest("tenant = 'acme'\n"));
        assert!(parsed.errors.is_empty());
        assert_eq!(parsed.config.guests[0].tenant.as_deref(), Some("acme"));
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(
            parsed.warnings[0].to_string(),
            "t.cfg:4: key 'tenant': no token in [shim] tokens is for tenant 'acme': only the admin can manage this guest"
        );
    }

    #[test]
    fn lifecycle_actions() {
        for key in ["on_poweroff", "on_reboot", "on_crash"] {
            for (name, action) in [
                ("destroy", LifecycleAction::Destroy),
                ("restart", LifecycleAction::Restart),
                ("preserve", LifecycleAction::Preserve),
            ] {
                let guest = only_guest(&minimal_guest(&format!("{key} = '{name}'\n")));
                let set = match key {
                    "on_poweroff" => guest.on_poweroff,
                    "on_reboot" => guest.on_reboot,
                    _ => guest.on_crash,
                };
                assert_eq!(set, action, "{key} = {name}");
            }
            for unsupported in ["coredump-destroy", "rename-restart", "soft-reset", "Destroy"] {
                let text = minimal_guest(&format!("{key} = '{unsupported}'\n"));
                let message = format!("{key} '{unsupported}' is not supported: use destroy, restart or preserve");
                guest_error(&text, 4, key, &message);
            }
        }
    }

    #[test]
    fn unknown_and_repeated_keys() {
        guest_error(&minimal_guest("disk = ['phy:/dev/sda,xvda,w']\n"), 4, "disk", "unknown key 'disk' for a guest");
        guest_error(&minimal_guest("Memory = 5\n"), 4, "Memory", "unknown key 'Memory' for a guest");
        let parsed =
            guest_error(&minimal_guest("memory = 1024\n"), 4, "memory", "key 'memory' is already set on line 2");
        assert_eq!(parsed.rejected_guests[0].name.as_deref(), Some("vm"));
        assert_eq!(parsed.errors[0].to_string(), "t.cfg:4: key 'memory': key 'memory' is already set on line 2");
    }

    #[test]
    fn a_broken_value_is_not_also_missing_or_unknown() {
        // One error each: the syntax error, not "missing" or "unknown" too.
        guest_error("name = 'vm'\nmemory = 512M\nkernel = 'k'\n", 2, "memory", "malformed number");
        guest_error(&minimal_guest("disk = [ 'a' 'b' ]\n"), 4, "disk", "expected ',' or ']'");
    }

    #[test]
    fn names_show_in_messages_without_control_characters() {
        let parsed = guest_error("name = \"a\\nb\"\nmemory = 1\nkernel = 'k'\n", 1, "name", "guest name 'a\\nb'");
        assert!(!parsed.errors[0].to_string().contains('\n'));
        assert!(!parsed.errors[0].message.is_empty());
        let _ = parsed.errors[0].to_string();
    }

    #[test]
    fn is_valid_name_limits() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name(&"a".repeat(MAX_NAME_LEN)));
        assert!(!is_valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a:b"));
        assert_eq!(LifecycleAction::from_name("restart"), Some(LifecycleAction::Restart));
        assert_eq!(LifecycleAction::Preserve.name().to_string(), "preserve");
    }
}
