//! Whole-file tests: files with several sections, error collection across
//! them, secrecy of tokens, and property tests over arbitrary text.
//! The helpers at the top are shared with the per-module tests.

use crate::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

pub(crate) const FILE: &str = "t.cfg";

/// The smallest valid guest, as a file without headers (lines 1 to 3),
/// followed by `extra` from line 4 on.
pub(crate) fn minimal_guest(extra: &str) -> String {
    format!("name = 'vm'\nmemory = 512\nkernel = 'vmlinuz'\n{extra}")
}

/// Parses `text`, which must be clean and hold exactly one guest.
#[track_caller]
pub(crate) fn only_guest(text: &str) -> GuestConfig {
    let parsed = parse(FILE, text);
    assert!(parsed.errors.is_empty(), "errors: {:#?}", parsed.errors);
    assert_eq!(parsed.config.guests.len(), 1, "{parsed:#?}");
    parsed.config.guests[0].clone()
}

/// Parses `text`, which must have exactly one error, at `line` about `key`,
/// whose message contains `fragment`.
#[track_caller]
pub(crate) fn single_error(text: &str, line: u32, key: Option<&str>, fragment: &str) -> Parsed {
    let parsed = parse(FILE, text);
    assert_eq!(parsed.errors.len(), 1, "expected one error, got {:#?}", parsed.errors);
    let error = &parsed.errors[0];
    assert_eq!(error.file, FILE);
    assert_eq!((error.line, error.key.as_deref()), (line, key), "{error}");
    assert!(error.message.contains(fragment), "{error:?} does not contain {fragment:?}");
    parsed
}

/// `single_error` for a guest, which must then be rejected.
#[track_caller]
pub(crate) fn guest_error(text: &str, line: u32, key: &str, fragment: &str) -> Parsed {
    let parsed = single_error(text, line, Some(key), fragment);
    assert!(parsed.config.guests.is_empty(), "the guest should be rejected: {parsed:#?}");
    assert_eq!(parsed.rejected_guests.len(), 1);
    parsed
}

/// (line, key) of every error, in order.
pub(crate) fn error_places(parsed: &Parsed) -> Vec<(u32, Option<&str>)> {
    parsed.errors.iter().map(|e| (e.line, e.key.as_deref())).collect()
}

const FULL_EXAMPLE: &str = r#"# Matryoshka boot configuration
[shim]
log_level = "debug"
ip = "10.0.0.2/24"
gateway = "10.0.0.1"
control_port = 7100
tokens = [
    "role=admin,secret=0123456789abcdef-admin",
    "tenant=acme, secret=acme-secret-0123456789",
]

[guest]
name = "xen-l1"
type = "hvm"
memory = 4096
maxmem = 4096
vcpus = 2
maxvcpus = 4
kernel = "xen.gz"
ramdisk = "dom0.img"
cmdline = "dom0_mem=1024M console=com1"
hap = 1
nestedhvm = 1
tenant = "acme"
cpuid = [ '0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
          '0x7,0x0:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxk1', ]
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "preserve"

[guest]
name = "linux"
memory = 1024
kernel = 'bzImage'
"#;

#[test]
fn full_example_with_shim_and_two_guests() {
    let parsed = parse("boot.cfg", FULL_EXAMPLE);
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    assert!(parsed.warnings.is_empty(), "{:#?}", parsed.warnings);
    assert!(parsed.rejected_guests.is_empty());
    assert!(parsed.is_clean());

    let shim = &parsed.config.shim;
    assert_eq!(shim.log_level, LogLevel::Debug);
    assert_eq!(
        shim.network,
        NetworkConfig::Static { address: [10, 0, 0, 2], prefix_len: 24, gateway: Some([10, 0, 0, 1]) }
    );
    assert_eq!(shim.control_port, 7100);
    assert_eq!(
        shim.tokens,
        vec![
            AccessToken { secret: "0123456789abcdef-admin".into(), scope: TokenScope::Admin },
            AccessToken { secret: "acme-secret-0123456789".into(), scope: TokenScope::Tenant("acme".into()) },
        ]
    );

    let [xen, linux] = &parsed.config.guests[..] else { panic!("{:#?}", parsed.config.guests) };
    assert_eq!(xen.name, "xen-l1");
    assert_eq!(xen.line, 12);
    assert_eq!((xen.memory_mib, xen.vcpus, xen.max_vcpus), (4096, 2, 4));
    assert_eq!(xen.kernel, "xen.gz");
    assert_eq!(xen.ramdisk.as_deref(), Some("dom0.img"));
    assert_eq!(xen.cmdline, "dom0_mem=1024M console=com1");
    assert!(xen.nested_hvm);
    assert_eq!(xen.tenant.as_deref(), Some("acme"));
    assert_eq!(
        (xen.on_poweroff, xen.on_reboot, xen.on_crash),
        (LifecycleAction::Destroy, LifecycleAction::Restart, LifecycleAction::Preserve)
    );
    let masks: Vec<String> = xen.cpuid.masks().map(ToString::to_string).collect();
    assert_eq!(masks, vec!["0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "0x7,0x0:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxk1"]);
    // Leaf 7 subleaf 0: bit 1 from the host, bit 0 forced on, the rest default.
    assert_eq!(xen.cpuid.apply(7, 0, [0, 0b10, 0, 0], [9, 0xf0, 9, 9]), [9, 0xf3, 9, 9]);
    assert_eq!(xen.cpuid.apply(7, 1, [0, 0b10, 0, 0], [9, 0xf0, 9, 9]), [9, 0xf0, 9, 9]);

    assert_eq!(linux.name, "linux");
    assert_eq!(linux.line, 31);
    assert_eq!((linux.memory_mib, linux.vcpus, linux.max_vcpus), (1024, 1, 1));
    assert_eq!(linux.tenant, None);
}

#[test]
fn a_file_without_headers_is_one_xl_guest() {
    // Written as for xl: legacy keys, comments, a multi-line list, ';'.
    let text = r#"
# An xl.cfg file
builder = 'hvm'
name = "legacy"; memory = 0x800
vcpus = 2
kernel = "/boot/vmlinuz"   # the boot module's name
root = "/dev/xvda1 ro"
extra = "console=hvc0"
cpuid = [
    "0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "0x80000001:edx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
]
"#;
    let guest = only_guest(text);
    assert_eq!(guest.name, "legacy");
    assert_eq!(guest.line, 1);
    assert_eq!(guest.memory_mib, 2048);
    assert_eq!(guest.vcpus, 2);
    assert_eq!(guest.cmdline, "root=/dev/xvda1 ro console=hvc0");
    let leaves: Vec<u32> = guest.cpuid.masks().map(|mask| mask.leaf).collect();
    assert_eq!(leaves, vec![1, 0x8000_0001]);
    // No [shim]: the defaults.
    assert_eq!(parse(FILE, text).config.shim, ShimSettings::default());
}

#[test]
fn keys_before_the_first_header_are_errors() {
    let text = "memory = 512\nlog_level = 'info'\n[guest]\nname = 'a'\nmemory = 1\nkernel = 'k'\n";
    let parsed = parse(FILE, text);
    assert_eq!(error_places(&parsed), vec![(1, Some("memory")), (2, Some("log_level"))]);
    assert_eq!(parsed.errors[0].message, "key 'memory' is outside a section: put it under [shim] or [guest]");
    // The errors are not the guest's: it is kept.
    assert_eq!(parsed.config.guests.len(), 1);
}

#[test]
fn an_error_in_one_guest_does_not_drop_the_others() {
    let text = "[guest]\nname = 'good1'\nmemory = 64\nkernel = 'k'\n\
                [guest]\nname = 'bad'\nmemory = 64\nkernel = 'k'\ndisk = ['phy:/dev/sda']\n\
                [guest]\nname = 'good2'\nmemory = 64\nkernel = 'k'\n";
    let parsed = single_error(text, 9, Some("disk"), "unknown key 'disk' for a guest");
    let names: Vec<&str> = parsed.config.guests.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, vec!["good1", "good2"]);
    assert_eq!(parsed.rejected_guests, vec![RejectedGuest { name: Some("bad".into()), line: 5 }]);
}

#[test]
fn a_syntax_error_rejects_its_guest() {
    let text =
        "[guest]\nname = 'a'\nmemory = 64\nkernel = 'k'\nvcpus = 2 3\n[guest]\nname = 'b'\nmemory = 64\nkernel = 'k'\n";
    let parsed = single_error(text, 5, Some("vcpus"), "expected a newline or ';' after the value");
    assert_eq!(parsed.rejected_guests, vec![RejectedGuest { name: Some("a".into()), line: 1 }]);
    assert_eq!(parsed.config.guests.len(), 1);
    assert_eq!(parsed.config.guests[0].name, "b");
}

#[test]
fn every_error_in_a_file_is_reported_in_line_order() {
    let text = r#"[shim]
log_level = "loud"
control_port = 0
bogus = 1

[guest]
name = "one"
memory = 0
kernel = "k"
hap = 0
cpuid = [
   '0x1:ecx=0xxx',
   '0x1:eax=y0000000000000000000000000000000',
]
color = "blue"
on_crash = "coredump-destroy"

[guest]
name = "one"
memory = 512
maxmem = 1024
kernel = "k"
vcpus = 2 3
"#;
    let parsed = parse(FILE, text);
    assert_eq!(
        error_places(&parsed),
        vec![
            (2, Some("log_level")),
            (3, Some("control_port")),
            (4, Some("bogus")),
            (8, Some("memory")),
            (10, Some("hap")),
            // Both bad entries of the list starting on line 11.
            (11, Some("cpuid")),
            (11, Some("cpuid")),
            (15, Some("color")),
            (16, Some("on_crash")),
            (19, Some("name")),
            (21, Some("maxmem")),
            (23, Some("vcpus")),
        ]
    );
    assert!(parsed.errors[5].message.starts_with("cpuid entry 1 '0x1:ecx=0xxx': value for ecx has 4 characters"));
    assert!(parsed.errors[6].message.contains("cpuid entry 2"));
    assert!(parsed.errors[6].message.contains("'y' at position 0 (bit 31)"));
    assert!(parsed.errors[9].message.contains("guest name 'one' is already used on line 7"));
    assert!(parsed.config.guests.is_empty());
    assert_eq!(
        parsed.rejected_guests,
        vec![RejectedGuest { name: Some("one".into()), line: 6 }, RejectedGuest { name: Some("one".into()), line: 18 }]
    );
    // The shim falls back to defaults for its bad keys.
    assert_eq!(parsed.config.shim, ShimSettings::default());
}

#[test]
fn multi_line_lists_keep_the_key_line_for_value_errors() {
    let text = minimal_guest("cpuid = [\n\n  '0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',\n  # a comment inside the list\n  '0x2:ebx=1',\n]\n");
    guest_error(&text, 4, "cpuid", "cpuid entry 2 '0x2:ebx=1': value for ebx has 1 characters, expected 32");
}

#[test]
fn syntax_errors_point_at_the_offending_token() {
    // Inside a list spanning lines, the token's own line is the useful one.
    let text = minimal_guest("cpuid = [\n  '0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'\n  '0x2:ebx=1',\n]\n");
    guest_error(&text, 6, "cpuid", "expected ',' or ']' after a list item, found a string");
}

#[test]
fn an_unknown_section_is_one_error_and_its_keys_are_not_checked() {
    let text = "[network]\nfoo = 1\nbar = 'x'\n[guest]\nname = 'a'\nmemory = 1\nkernel = 'k'\n";
    let parsed = single_error(text, 1, None, "unknown section ['network']: expected [shim] or [guest]");
    assert_eq!(parsed.config.guests.len(), 1);
}

#[test]
fn shim_sections_are_read_as_one() {
    let text = "[shim]\nlog_level = 'warn'\n[guest]\nname = 'a'\nmemory = 1\nkernel = 'k'\n[shim]\ncontrol_port = 80\nlog_level = 'error'\n";
    let parsed = single_error(text, 9, Some("log_level"), "key 'log_level' is already set on line 2");
    assert_eq!(parsed.config.shim.log_level, LogLevel::Warn);
    assert_eq!(parsed.config.shim.control_port, 80);
    assert_eq!(parsed.config.guests.len(), 1);
}

#[test]
fn files_that_start_no_guest_say_so() {
    for text in ["", "\n# only a comment\n\n", "[shim]\nlog_level = 'info'\n"] {
        let parsed = parse(FILE, text);
        assert!(parsed.errors.is_empty());
        assert!(parsed.config.guests.is_empty());
        assert_eq!(parsed.warnings.len(), 1, "{text:?}");
        assert!(parsed.warnings[0].message.contains("no guest will start"));
    }
}

#[test]
fn the_file_name_labels_every_message() {
    let parsed = parse("/boot/matryoshka.cfg", "name = 'a'\nmemory = 'x'\nkernel = 'k'\n");
    assert_eq!(
        parsed.errors[0].to_string(),
        "/boot/matryoshka.cfg:2: key 'memory': expected a number of MiB, got a string"
    );
}

/// Secrets used in `no_message_or_debug_output_holds_a_secret`.
const SECRETS: [&str; 3] = ["S3cr3t-admin-0123456789", "tenantSecret_ABCDEFGHIJ", "sh0rt-but-16char"];

#[test]
fn no_message_or_debug_output_holds_a_secret() {
    let [admin, tenant, third] = SECRETS;
    let too_long = third.repeat(17);
    let text = format!(
        r#"[shim]
tokens = [
  "role=admin,secret={admin}",
  "tenant=acme,secret={tenant}",
  "tenant=acme,secret={admin}",
  "role=root,secret={third}",
  "tenant=a b,secret={third}",
  "tenant=acme,role=admin,secret={third}",
  "tenant=acme,{third}",
  "tenant=acme,{third}=x",
  "secret={third}",
  "tenant=acme,secret={third},secret={third}",
  "tenant=acme,secret={third} x",
  "tenant=acme,secret={too_long}",
  "{third}",
]
bad = "x"
[guest]
name = "vm"
tenant = "nobody"
memory = 1
kernel = "k"
"#
    );
    let parsed = parse(FILE, &text);
    assert!(parsed.errors.len() >= 12, "{:#?}", parsed.errors);
    let mut outputs: Vec<String> = Vec::new();
    for message in parsed.errors.iter().chain(&parsed.warnings) {
        outputs.push(message.to_string());
        outputs.push(format!("{message:?}"));
    }
    outputs.push(format!("{parsed:?}"));
    outputs.push(format!("{parsed:#?}"));

    // The same file without the unquoted entry: its tokens are read, and
    // their Debug output must still hide the secrets.
    let valid = format!("[shim]\ntokens = ['role=admin,secret={admin}', 'tenant=acme,secret={tenant}']\n");
    let parsed_valid = parse(FILE, &valid);
    // An unquoted secret is a syntax error, which names no value either.
    let unquoted = parse(FILE, &format!("[shim]\ntokens = [ {third} ]\n{admin} 1\n"));
    assert_eq!(unquoted.errors.len(), 2);
    outputs.extend(unquoted.errors.iter().map(ToString::to_string));
    assert_eq!(parsed_valid.config.shim.tokens.len(), 2);
    outputs.push(format!("{parsed_valid:?}"));
    outputs.push(format!("{:?}", parsed_valid.config.shim.tokens));

    for output in &outputs {
        for secret in SECRETS {
            assert!(!output.contains(secret), "{output} contains {secret}");
        }
    }
    assert!(format!("{:?}", parsed_valid.config.shim.tokens[0]).contains("<redacted>"));
}

// ---------------------------------------------------------------------------
// Property tests

/// Text built mostly from the characters the grammar cares about, so that
/// random input reaches deep into the parser instead of failing on the first
/// character.
fn syntax_soup() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("\n"),
        Just(" "),
        Just("="),
        Just(";"),
        Just(","),
        Just("["),
        Just("]"),
        Just("#"),
        Just("'"),
        Just("\""),
        Just("\\"),
        Just("0x"),
        Just("1"),
        Just("0"),
        Just("x"),
        Just("k"),
        Just("[guest]\n"),
        Just("[shim]\n"),
        Just("name"),
        Just("memory"),
        Just("kernel"),
        Just("cpuid"),
        Just("tokens"),
        Just("ip"),
        Just("gateway"),
        Just("vcpus"),
        Just("maxvcpus"),
        Just("hap"),
        Just(":ecx="),
        Just("0x1"),
        Just("'role=admin,secret=0123456789abcdef'"),
        Just("é"),
        Just("\r"),
    ];
    prop::collection::vec(pieces, 0..80).prop_map(|pieces| pieces.concat())
}

/// What must hold for any parse of any text.
fn check_invariants(text: &str, parsed: &Parsed) {
    let last_line = u32::try_from(text.split('\n').count()).unwrap_or(u32::MAX);
    for message in parsed.errors.iter().chain(&parsed.warnings) {
        assert!((1..=last_line).contains(&message.line), "{message} outside 1..={last_line}");
        let _ = message.to_string();
    }
    // A guest is only rejected with an error to say why.
    if !parsed.rejected_guests.is_empty() {
        assert!(!parsed.errors.is_empty());
    }
    let names: BTreeSet<&str> = parsed.config.guests.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names.len(), parsed.config.guests.len(), "duplicate guest names accepted");
    let _ = format!("{parsed:?}");
}

/// A change to a text: (where, as a fraction of its length; what).
#[derive(Clone, Debug)]
enum Mutation {
    Delete { at: f64, len: usize },
    Insert { at: f64, text: String },
    DuplicateLine { at: f64 },
    Truncate { at: f64 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        (at.clone(), 1..8usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (at.clone(), syntax_soup()).prop_map(|(at, text)| Mutation::Insert { at, text }),
        at.clone().prop_map(|at| Mutation::DuplicateLine { at }),
        at.prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply_mutation(text: &str, mutation: &Mutation) -> String {
    let chars: Vec<char> = text.chars().collect();
    let index = |at: f64| ((at * chars.len() as f64) as usize).min(chars.len());
    let mut out = chars.clone();
    match mutation {
        Mutation::Delete { at, len } => {
            let start = index(*at);
            let end = (start + len).min(chars.len());
            out.drain(start..end);
        }
        Mutation::Insert { at, text } => {
            let start = index(*at);
            out.splice(start..start, text.chars());
        }
        Mutation::DuplicateLine { at } => {
            let lines: Vec<&str> = text.split('\n').collect();
            let which = ((at * lines.len() as f64) as usize).min(lines.len() - 1);
            let mut lines = lines;
            let duplicate = lines[which];
            lines.insert(which, duplicate);
            return lines.join("\n");
        }
        Mutation::Truncate { at } => out.truncate(index(*at)),
    }
    out.into_iter().collect()
}

/// A guest as the generator chose it, rendered into a file and read back.
#[derive(Clone, Debug)]
struct GeneratedGuest {
    name: String,
    memory_mib: u64,
    vcpus: Option<u32>,
    max_vcpus: Option<u32>,
    nested_hvm: bool,
    tenant: Option<String>,
    on_crash: LifecycleAction,
    masks: Vec<CpuidMask>,
    memory_in_hex: bool,
}

fn mask_bit() -> impl Strategy<Value = MaskBit> {
    prop_oneof![
        Just(MaskBit::Default),
        Just(MaskBit::Zero),
        Just(MaskBit::One),
        Just(MaskBit::Host),
        Just(MaskBit::HostPreserved),
    ]
}

fn cpuid_mask() -> impl Strategy<Value = CpuidMask> {
    // Vectors rather than arrays of strategies: nested arrays of value trees
    // overflow the test thread's stack.
    let register = prop::option::of(prop::collection::vec(mask_bit(), 32));
    (any::<u32>(), prop::option::of(0..4u32), prop::collection::vec(register, 4)).prop_map(
        |(leaf, subleaf, registers)| {
            let mut mask = CpuidMask::new(leaf % 0x20 + (if leaf % 3 == 0 { 0x8000_0000 } else { 0 }), subleaf);
            for (register, bits) in CpuidRegister::ALL.into_iter().zip(registers) {
                if let Some(bits) = bits.and_then(|bits| <[MaskBit; 32]>::try_from(bits).ok()) {
                    mask.set_register(register, bits);
                }
            }
            if CpuidRegister::ALL.iter().all(|r| mask.register(*r).is_none()) {
                mask.set_register(CpuidRegister::Edx, [MaskBit::Default; 32]);
            }
            mask
        },
    )
}

fn generated_guest() -> impl Strategy<Value = GeneratedGuest> {
    let vcpus = prop::option::of(1..=MAX_VCPUS);
    (
        "[A-Za-z0-9_.-]{1,60}",
        1..=MAX_MEMORY_MIB,
        (vcpus, prop::option::of(0..=MAX_VCPUS)),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["acme", "t-1", "x.y_z"])),
        prop::sample::select(vec![LifecycleAction::Destroy, LifecycleAction::Restart, LifecycleAction::Preserve]),
        prop::collection::vec(cpuid_mask(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(name, memory_mib, (vcpus, extra_max), nested_hvm, tenant, on_crash, masks, memory_in_hex)| {
            // maxvcpus, when given, is at least vcpus.
            let max_vcpus = extra_max.map(|extra| vcpus.unwrap_or(1).max(extra));
            // One mask per (leaf, subleaf), as the format requires.
            let mut seen = BTreeSet::new();
            let masks = masks.into_iter().filter(|m| seen.insert((m.leaf, m.subleaf))).collect();
            GeneratedGuest {
                name,
                memory_mib,
                vcpus,
                max_vcpus,
                nested_hvm,
                tenant: tenant.map(Into::into),
                on_crash,
                masks,
                memory_in_hex,
            }
        })
}

/// Renders the guests (renamed to be unique) under a [shim] with a token for
/// each tenant; returns the text and each guest's header line.
fn render(guests: &mut [GeneratedGuest], control_port: u16, log_level: LogLevel) -> (String, Vec<u32>) {
    let mut lines: Vec<String> = vec![
        "[shim]".into(),
        format!("log_level = '{}'", log_level.name()),
        format!("control_port = {control_port}"),
        "tokens = [".into(),
        "  'role=admin, secret=admin-secret-0000000000',".into(),
    ];
    for tenant in ["acme", "t-1", "x.y_z"] {
        lines.push(format!("  \"tenant={tenant},secret={tenant}-secret-0000000000\","));
    }
    lines.push("]".into());
    let mut header_lines = Vec::new();
    for (index, guest) in guests.iter_mut().enumerate() {
        guest.name = format!("{}-{index}", guest.name);
        lines.push(String::new());
        lines.push("[guest]".into());
        header_lines.push(u32::try_from(lines.len()).unwrap());
        lines.push(format!("name = \"{}\"", guest.name));
        if guest.memory_in_hex {
            lines.push(format!("memory = {:#x}", guest.memory_mib));
        } else {
            lines.push(format!("memory = {}", guest.memory_mib));
        }
        lines.push(format!("kernel = 'kernel-{index}'"));
        if let Some(vcpus) = guest.vcpus {
            lines.push(format!("vcpus = {vcpus}"));
        }
        if let Some(max_vcpus) = guest.max_vcpus {
            lines.push(format!("maxvcpus = {max_vcpus}"));
        }
        lines.push(format!("nestedhvm = {}", u8::from(guest.nested_hvm)));
        if let Some(tenant) = &guest.tenant {
            lines.push(format!("tenant = '{tenant}'"));
        }
        lines.push(format!("on_crash = \"{}\"", guest.on_crash.name()));
        if !guest.masks.is_empty() {
            lines.push("cpuid = [".into());
            for (position, mask) in guest.masks.iter().enumerate() {
                let quote = if position % 2 == 0 { '\'' } else { '"' };
                lines.push(format!("    {quote}{mask}{quote},"));
            }
            lines.push("]".into());
        }
    }
    (lines.join("\n"), header_lines)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let parsed = parse(FILE, &text);
        check_invariants(&text, &parsed);
    }

    #[test]
    fn syntax_heavy_text_never_panics(text in syntax_soup()) {
        let parsed = parse(FILE, &text);
        check_invariants(&text, &parsed);
    }

    #[test]
    fn mutated_valid_files_never_panic(mutations in prop::collection::vec(mutation(), 1..6)) {
        let mut text = String::from(FULL_EXAMPLE);
        for mutation in &mutations {
            text = apply_mutation(&text, mutation);
        }
        let parsed = parse(FILE, &text);
        check_invariants(&text, &parsed);
    }

    #[test]
    fn generated_files_read_back_as_generated(
        mut guests in prop::collection::vec(generated_guest(), 1..5),
        control_port in 1..=u16::MAX,
        log_level in prop::sample::select(LogLevel::ALL.to_vec()),
    ) {
        let (text, header_lines) = render(&mut guests, control_port, log_level);
        let parsed = parse(FILE, &text);
        prop_assert!(parsed.errors.is_empty(), "{:#?}\n{}", parsed.errors, text);
        prop_assert!(parsed.warnings.is_empty(), "{:#?}", parsed.warnings);
        prop_assert_eq!(parsed.config.shim.control_port, control_port);
        prop_assert_eq!(parsed.config.shim.log_level, log_level);
        prop_assert_eq!(parsed.config.shim.tokens.len(), 4);
        prop_assert_eq!(parsed.config.guests.len(), guests.len());
        for ((generated, read), line) in guests.iter().zip(&parsed.config.guests).zip(header_lines) {
            let mut expected_cpuid = CpuidPolicy::default();
            for mask in &generated.masks {
                prop_assert!(expected_cpuid.add(mask.clone()));
            }
            let vcpus = generated.vcpus.unwrap_or(1);
            let expected = GuestConfig {
                name: generated.name.clone(),
                line,
                memory_mib: generated.memory_mib,
                vcpus,
                max_vcpus: generated.max_vcpus.unwrap_or(vcpus),
                kernel: read.kernel.clone(),
                kernel_line: read.kernel_line,
                ramdisk: None,
                ramdisk_line: None,
                cmdline: String::new(),
                nested_hvm: generated.nested_hvm,
                cpuid: expected_cpuid,
                tenant: generated.tenant.clone(),
                on_poweroff: LifecycleAction::Destroy,
                on_reboot: LifecycleAction::Restart,
                on_crash: generated.on_crash,
            };
            prop_assert_eq!(read, &expected);
            prop_assert!(read.kernel.starts_with("kernel-"));
            let kernel_line = text.lines().nth(read.kernel_line as usize - 1).unwrap_or_default();
            prop_assert!(kernel_line.contains("kernel"), "line {} is {:?}", read.kernel_line, kernel_line);
        }
    }

    /// Whatever shape a malformed tokens entry takes, its secret stays out
    /// of every message.
    #[test]
    fn malformed_tokens_never_show_their_secret(
        secret in "[!-~&&[^,'\"\\\\]]{16,40}",
        shape in 0..10usize,
    ) {
        let entry = match shape {
            0 => format!("'secret={secret}'"),
            1 => format!("'{secret}'"),
            2 => format!("'tenant={secret}'"),
            3 => format!("'role={secret},secret={secret}'"),
            4 => format!("'tenant=a,secret={secret},secret={secret}'"),
            5 => format!("'tenant=a,{secret}'"),
            6 => format!("'tenant=a,secret={secret} {secret}'"),
            7 => format!("'tenant=a b,secret={secret}'"),
            8 => format!("'tenant=a,secret={secret}', 'role=admin,secret={secret}'"),
            _ => format!("'tenant=a,secret=\u{7}{secret}'"),
        };
        let text = format!("[shim]\ntokens = [{entry}]\n");
        let parsed = parse(FILE, &text);
        prop_assert!(!parsed.errors.is_empty(), "{}", text);
        let everything = format!("{parsed:?} {}", parsed.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
        prop_assert!(!everything.contains(&secret), "{}", everything);
    }
}
