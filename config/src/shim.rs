//! The keys of the `[shim]` section: logging, the network, the control port
//! and who may use it. A bad key is reported and its default used, so the
//! shim still boots and can say what was wrong.

use crate::fields::{Fields, Lookup};
use crate::guest::{is_valid_name, NAME_RULE};
use crate::parser::{Entry, Value};
use crate::report::{quoted, Report};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimSettings {
    pub log_level: LogLevel,
    pub network: NetworkConfig,
    pub control_port: u16,
    pub tokens: Vec<AccessToken>,
}

pub const DEFAULT_CONTROL_PORT: u16 = 7000;

impl Default for ShimSettings {
    fn default() -> Self {
        ShimSettings {
            log_level: LogLevel::Info,
            network: NetworkConfig::Dhcp,
            control_port: DEFAULT_CONTROL_PORT,
            tokens: Vec::new(),
        }
    }
}

/// Most severe first: a level shows its own messages and those above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [LogLevel::Error, LogLevel::Warn, LogLevel::Info, LogLevel::Debug, LogLevel::Trace];

    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        LogLevel::ALL.into_iter().find(|level| level.name() == name)
    }
}

/// How the shim's network interface gets its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetworkConfig {
    Dhcp,
    Static { address: [u8; 4], prefix_len: u8, gateway: Option<[u8; 4]> },
}

/// Who a token lets in on the control port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenScope {
    /// Everything: all guests and the shim.
    Admin,
    /// The guests whose `tenant` is this name.
    Tenant(String),
}

/// A secret presented on the control port, and what it grants.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AccessToken {
    pub secret: String,
    pub scope: TokenScope,
}

/// Written by hand so that the secret never reaches a log.
impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken").field("secret", &"<redacted>").field("scope", &self.scope).finish()
    }
}

pub const MIN_SECRET_LEN: usize = 16;
pub const MAX_SECRET_LEN: usize = 256;

/// Reads the entries of every `[shim]` section, as one section.
pub(crate) fn read_shim<'e>(entries: impl IntoIterator<Item = &'e Entry>, report: &mut Report) -> ShimSettings {
    let mut fields = Fields::new(entries, report);
    let defaults = ShimSettings::default();
    let log_level = read_log_level(&mut fields).unwrap_or(defaults.log_level);
    let network = read_network(&mut fields);
    let control_port = fields
        .number("control_port", "a TCP port number", 1..=u64::from(u16::MAX))
        .value()
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or(defaults.control_port);
    let tokens = read_tokens(&mut fields).unwrap_or_default();
    fields.finish("for [shim]");
    ShimSettings { log_level, network, control_port, tokens }
}

fn read_log_level(fields: &mut Fields) -> Option<LogLevel> {
    let Lookup::Found { value, line } = fields.text("log_level", "a level in quotes, like \"info\"") else {
        return None;
    };
    let level = LogLevel::from_name(value);
    if level.is_none() {
        let message = format!("log level {} is not valid: use error, warn, info, debug or trace", quoted(value));
        fields.error(line, "log_level", message);
    }
    level
}

fn read_network(fields: &mut Fields) -> NetworkConfig {
    let ip = fields.text("ip", "\"dhcp\" or an address like \"192.168.1.10/24\"");
    let gateway = fields.text("gateway", "an address in quotes, like \"192.168.1.1\"");
    let (address, prefix_len) = match ip {
        Lookup::Found { value: "dhcp", .. } | Lookup::Absent => {
            if let Lookup::Found { line, .. } = gateway {
                fields.error(line, "gateway", "gateway is only valid with a static ip (ip = \"A.B.C.D/PREFIX\")");
            }
            return NetworkConfig::Dhcp;
        }
        // With a bad ip, an error about the gateway would only confuse.
        Lookup::Invalid => return NetworkConfig::Dhcp,
        Lookup::Found { value, line } => match parse_ipv4_with_prefix(value) {
            Some(address_and_prefix) => address_and_prefix,
            None => {
                let message = format!(
                    "ip {} is not valid: use \"dhcp\" or A.B.C.D/PREFIX with a prefix from 0 to 32",
                    quoted(value)
                );
                fields.error(line, "ip", message);
                return NetworkConfig::Dhcp;
            }
        },
    };
    let gateway = match gateway {
        Lookup::Found { value, line } => {
            let parsed = parse_ipv4(value);
            match parsed {
                None => fields.error(line, "gateway", format!("gateway {} is not valid: use A.B.C.D", quoted(value))),
                Some(gateway) if !same_subnet(gateway, address, prefix_len) => {
                    let message = format!(
                        "gateway {} is outside {}/{prefix_len}: the shim cannot reach it directly",
                        dotted(gateway),
                        dotted(address)
                    );
                    fields.warn(line, "gateway", message);
                }
                Some(_) => {}
            }
            parsed
        }
        _ => None,
    };
    NetworkConfig::Static { address, prefix_len, gateway }
}

/// `A.B.C.D`, each part decimal from 0 to 255 with no leading zero (which
/// some tools read as octal).
fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut address = [0; 4];
    let mut parts = text.split('.');
    for byte in &mut address {
        *byte = parse_small_decimal(parts.next()?)?.try_into().ok()?;
    }
    parts.next().is_none().then_some(address)
}

fn parse_ipv4_with_prefix(text: &str) -> Option<([u8; 4], u8)> {
    let (address, prefix) = text.split_once('/')?;
    let prefix = u8::try_from(parse_small_decimal(prefix)?).ok().filter(|prefix| *prefix <= 32)?;
    Some((parse_ipv4(address)?, prefix))
}

/// One to three decimal digits, no leading zero.
fn parse_small_decimal(text: &str) -> Option<u16> {
    let plain = (1..=3).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_digit())
        && !(text.len() > 1 && text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

fn same_subnet(a: [u8; 4], b: [u8; 4], prefix_len: u8) -> bool {
    let netmask = u32::MAX.checked_shl(32 - u32::from(prefix_len)).unwrap_or(0);
    u32::from_be_bytes(a) & netmask == u32::from_be_bytes(b) & netmask
}

fn dotted(address: [u8; 4]) -> String {
    let [a, b, c, d] = address;
    format!("{a}.{b}.{c}.{d}")
}

/// The valid entries of the token list. A wrong entry is reported and left
/// out, like a bad line in an SSH authorized_keys file: one typo must not
/// lock every tenant and the admin out. Messages name entries by position
/// and never repeat their text: any part of it could be a secret.
fn read_tokens(fields: &mut Fields) -> Option<Vec<AccessToken>> {
    let what = "a list like [\"role=admin,secret=...\", \"tenant=NAME,secret=...\"]";
    let Lookup::Found { value: entries, line } = fields.list("tokens", what) else {
        return None;
    };
    let mut tokens: Vec<AccessToken> = Vec::new();
    // Secret -> number of the entry that gave it.
    let mut secrets_in_use: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let entry_number = index + 1;
        let token = match entry {
            Value::Text(text) => parse_token(text),
            other => Err(format!("expected a string \"tenant=NAME,secret=...\", got {}", other.describe())),
        };
        let token = token.and_then(|token| match secrets_in_use.get(&token.secret) {
            Some(earlier) => Err(format!("has the same secret as entry {earlier}: every token needs its own")),
            None => Ok(token),
        });
        match token {
            Ok(token) => {
                secrets_in_use.insert(token.secret.clone(), entry_number);
                tokens.push(token);
            }
            Err(problem) => {
                let message = format!("tokens entry {entry_number}: {problem}");
                fields.error(line, "tokens", message);
            }
        }
    }
    Some(tokens)
}

/// One `KEY=VALUE,KEY=VALUE` token spec.
fn parse_token(text: &str) -> Result<AccessToken, String> {
    let mut tenant = None;
    let mut role = None;
    let mut secret = None;
    for (index, item) in text.split(',').enumerate() {
        let item_number = index + 1;
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("item {item_number} is not KEY=VALUE (tenant=, role= or secret=)"))?;
        let slot = match key.trim() {
            "tenant" => &mut tenant,
            "role" => &mut role,
            "secret" => &mut secret,
            _ => return Err(format!("item {item_number} has an unknown key: use tenant=, role= or secret=")),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(format!("item {item_number} repeats {}=", key.trim()));
        }
    }
    let scope = match (tenant, role) {
        (Some(_), Some(_)) => {
            return Err("gives both tenant= and role=: a token is for one tenant or for the admin".into())
        }
        (None, None) => return Err("needs tenant=NAME or role=admin".into()),
        (None, Some("admin")) => TokenScope::Admin,
        (None, Some(_)) => return Err("role must be admin".into()),
        (Some(tenant), None) if is_valid_name(tenant) => TokenScope::Tenant(tenant.into()),
        (Some(_), None) => return Err(format!("the tenant name is not valid: {NAME_RULE}")),
    };
    let secret = secret.ok_or("needs secret=SECRET")?;
    let length = secret.chars().count();
    if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&length) {
        return Err(format!("the secret has {length} characters, expected {MIN_SECRET_LEN} to {MAX_SECRET_LEN}"));
    }
    if let Some(position) = secret.chars().position(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "character {} of the secret is not printable ASCII (spaces are not allowed either)",
            position + 1
        ));
    }
    Ok(AccessToken { secret: secret.into(), scope })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{single_error, FILE};
    use crate::{parse, Parsed};
    use alloc::string::ToString;
    use alloc::vec;

    /// A file with only a [shim] section holding `keys`, from line 2 on.
    fn shim_file(keys: &str) -> String {
        format!("[shim]\n{keys}")
    }

    #[track_caller]
    fn clean_shim(keys: &str) -> ShimSettings {
        let parsed = parse(FILE, &shim_file(keys));
        assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
        parsed.config.shim
    }

    /// The one error of a [shim] with `keys`, whose first key is on line 2.
    #[track_caller]
    fn shim_error(keys: &str, line: u32, key: &str, fragment: &str) -> Parsed {
        single_error(&shim_file(keys), line, Some(key), fragment)
    }

    fn static_network(address: [u8; 4], prefix_len: u8, gateway: Option<[u8; 4]>) -> NetworkConfig {
        NetworkConfig::Static { address, prefix_len, gateway }
    }

    #[test]
    fn defaults() {
        let defaults = ShimSettings::default();
        assert_eq!(defaults.log_level, LogLevel::Info);
        assert_eq!(defaults.network, NetworkConfig::Dhcp);
        assert_eq!(defaults.control_port, 7000);
        assert!(defaults.tokens.is_empty());
        assert_eq!(clean_shim(""), defaults);
    }

    #[test]
    fn log_level() {
        for level in LogLevel::ALL {
            assert_eq!(clean_shim(&format!("log_level = '{}'\n", level.name())).log_level, level);
        }
        assert!(LogLevel::Error < LogLevel::Trace);
        let parsed = shim_error(
            "log_level = 'verbose'\n",
            2,
            "log_level",
            "log level 'verbose' is not valid: use error, warn, info, debug or trace",
        );
        assert_eq!(parsed.config.shim.log_level, LogLevel::Info);
        shim_error("log_level = 3\n", 2, "log_level", "got a number");
    }

    #[test]
    fn ip_and_gateway() {
        assert_eq!(clean_shim("ip = 'dhcp'\n").network, NetworkConfig::Dhcp);
        assert_eq!(clean_shim("ip = '192.168.1.10/24'\n").network, static_network([192, 168, 1, 10], 24, None));
        assert_eq!(
            clean_shim("gateway = '10.1.0.1'\nip = '10.1.2.3/16'\n").network,
            static_network([10, 1, 2, 3], 16, Some([10, 1, 0, 1]))
        );
        assert_eq!(
            clean_shim("ip = '0.0.0.0/0'\ngateway = '1.2.3.4'\n").network,
            static_network([0; 4], 0, Some([1, 2, 3, 4]))
        );
        assert_eq!(clean_shim("ip = '255.255.255.255/32'\n").network, static_network([255; 4], 32, None));
    }

    #[test]
    fn bad_ip_addresses() {
        for bad in [
            "10.0.0.1",
            "10.0.0.1/",
            "10.0.0.1/33",
            "10.0.0.1/024",
            "256.0.0.1/24",
            "010.0.0.1/24",
            "10.0.0/24",
            "10.0.0.1.5/24",
            "a.b.c.d/8",
            "10..0.1/8",
            " 10.0.0.1/8",
            "DHCP",
            "",
        ] {
            let parsed =
                shim_error(&format!("ip = '{bad}'\n"), 2, "ip", "is not valid: use \"dhcp\" or A.B.C.D/PREFIX");
            assert_eq!(parsed.config.shim.network, NetworkConfig::Dhcp, "{bad}");
        }
        // A gateway beside a bad ip gets no error of its own.
        shim_error("ip = 'x'\ngateway = '10.0.0.1'\n", 2, "ip", "'x' is not valid");
        shim_error("ip = 5\n", 2, "ip", "expected \"dhcp\" or an address like \"192.168.1.10/24\", got a number");
    }

    #[test]
    fn gateway_needs_a_static_ip() {
        let message = "gateway is only valid with a static ip";
        shim_error("gateway = '10.0.0.1'\n", 2, "gateway", message);
        shim_error("ip = 'dhcp'\ngateway = '10.0.0.1'\n", 3, "gateway", message);
    }

    #[test]
    fn bad_gateway_keeps_the_static_ip() {
        for bad in ["10.0.0.256", "10.0.0", "10.0.0.1/24", "gw"] {
            let parsed = shim_error(
                &format!("ip = '10.0.0.2/24'\ngateway = '{bad}'\n"),
                3,
                "gateway",
                "is not valid: use A.B.C.D",
            );
            assert_eq!(parsed.config.shim.network, static_network([10, 0, 0, 2], 24, None));
        }
    }

    #[test]
    fn gateway_outside_the_subnet_is_a_warning() {
        let parsed = parse(FILE, &shim_file("ip = '10.0.0.2/24'\ngateway = '10.0.1.1'\n"));
        assert!(parsed.errors.is_empty());
        assert_eq!(parsed.config.shim.network, static_network([10, 0, 0, 2], 24, Some([10, 0, 1, 1])));
        // The other warning is that the file starts no guest.
        assert_eq!(parsed.warnings.len(), 2);
        assert_eq!(
            parsed.warnings[1].to_string(),
            "t.cfg:3: key 'gateway': gateway 10.0.1.1 is outside 10.0.0.2/24: the shim cannot reach it directly"
        );
        assert!(same_subnet([10, 0, 0, 1], [10, 0, 0, 254], 24));
        assert!(!same_subnet([10, 0, 0, 1], [10, 0, 0, 254], 32));
        assert!(same_subnet([1, 2, 3, 4], [200, 0, 0, 0], 0));
    }

    #[test]
    fn control_port() {
        assert_eq!(clean_shim("control_port = 1\n").control_port, 1);
        assert_eq!(clean_shim("control_port = 65535\n").control_port, 65535);
        assert_eq!(clean_shim("control_port = 0x1F90\n").control_port, 8080);
        for bad in ["0", "65536"] {
            let parsed = shim_error(
                &format!("control_port = {bad}\n"),
                2,
                "control_port",
                &format!("expected a TCP port number from 1 to 65535, got {bad}"),
            );
            assert_eq!(parsed.config.shim.control_port, DEFAULT_CONTROL_PORT);
        }
        shim_error("control_port = '80'\n", 2, "control_port", "expected a TCP port number, got a string");
    }

    #[test]
    fn tokens() {
        let shim = clean_shim(
            "tokens = [\n  'role=admin,secret=0123456789abcdef',\n  ' tenant = acme ,\tsecret= !\"#$%&()*+-./:<=>? ',\n]\n",
        );
        assert_eq!(
            shim.tokens,
            vec![
                AccessToken { secret: "0123456789abcdef".into(), scope: TokenScope::Admin },
                AccessToken { secret: "!\"#$%&()*+-./:<=>?".into(), scope: TokenScope::Tenant("acme".into()) },
            ]
        );
        // Order of items does not matter, and several tokens may share a tenant.
        let shim =
            clean_shim("tokens = ['secret=first-secret-000000,tenant=a', 'tenant=a,secret=second-secret-00000']\n");
        assert_eq!(shim.tokens.len(), 2);
        assert!(clean_shim("tokens = []\n").tokens.is_empty());
        let longest = "z".repeat(MAX_SECRET_LEN);
        assert_eq!(clean_shim(&format!("tokens = ['role=admin,secret={longest}']\n")).tokens[0].secret, longest);
    }

    #[test]
    fn token_errors_name_the_entry_and_drop_only_that_entry() {
        let good = "'role=admin,secret=0123456789abcdef'";
        for (entry, message) in [
            ("1", "tokens entry 2: expected a string \"tenant=NAME,secret=...\", got a number"),
            ("'role=admin'", "tokens entry 2: needs secret=SECRET"),
            ("'secret=fedcba9876543210'", "tokens entry 2: needs tenant=NAME or role=admin"),
            ("'role=user,secret=fedcba9876543210'", "tokens entry 2: role must be admin"),
            ("'tenant=a,role=admin,secret=fedcba9876543210'", "tokens entry 2: gives both tenant= and role="),
            (
                "'tenant=a b,secret=fedcba9876543210'",
                "tokens entry 2: the tenant name is not valid: use 1 to 64 characters",
            ),
            ("'tenant=,secret=fedcba9876543210'", "tokens entry 2: the tenant name is not valid"),
            ("'tenant=a,fedcba9876543210'", "tokens entry 2: item 2 is not KEY=VALUE (tenant=, role= or secret=)"),
            (
                "'tenant=a,token=fedcba9876543210'",
                "tokens entry 2: item 2 has an unknown key: use tenant=, role= or secret=",
            ),
            ("'tenant=a,tenant=b,secret=fedcba9876543210'", "tokens entry 2: item 2 repeats tenant="),
            ("''", "tokens entry 2: item 1 is not KEY=VALUE"),
            ("'role=admin,secret=fedcba987654321'", "tokens entry 2: the secret has 15 characters, expected 16 to 256"),
            (
                "'role=admin,secret=0123456789abcdef'",
                "tokens entry 2: has the same secret as entry 1: every token needs its own",
            ),
            (
                "'role=admin,secret=fedcba98 76543210'",
                "tokens entry 2: character 9 of the secret is not printable ASCII",
            ),
            (
                "'role=admin,secret=fedcba9876543210\u{e9}'",
                "tokens entry 2: character 17 of the secret is not printable ASCII",
            ),
        ] {
            let parsed = shim_error(&format!("tokens = [{good}, {entry}]\n"), 2, "tokens", message);
            assert_eq!(parsed.config.shim.tokens.len(), 1, "{entry}");
            assert_eq!(parsed.config.shim.tokens[0].secret, "0123456789abcdef", "{entry}");
        }
        let too_long = "z".repeat(MAX_SECRET_LEN + 1);
        shim_error(
            &format!("tokens = ['role=admin,secret={too_long}']\n"),
            2,
            "tokens",
            "the secret has 257 characters",
        );
        shim_error("tokens = 'role=admin,secret=0123456789abcdef'\n", 2, "tokens", "expected a list like [");
    }

    #[test]
    fn every_bad_token_entry_is_reported_at_the_key_line() {
        let parsed = parse(
            FILE,
            &shim_file(
                "log_level = 'info'\ntokens = [\n  'role=admin',\n  'role=admin,secret=0123456789abcdef',\n  'x',\n]\n",
            ),
        );
        let errors: Vec<String> = parsed.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            vec![
                "t.cfg:3: key 'tokens': tokens entry 1: needs secret=SECRET",
                "t.cfg:3: key 'tokens': tokens entry 3: item 1 is not KEY=VALUE (tenant=, role= or secret=)",
            ]
        );
    }

    #[test]
    fn a_repeated_secret_names_the_entry_that_gave_it_first() {
        let text = "tokens = [5, 'role=admin,secret=0123456789abcdef', 'tenant=b,secret=0123456789abcdef']\n";
        let parsed = parse(FILE, &shim_file(text));
        let messages: Vec<&str> = parsed.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("tokens entry 1: expected a string"));
        assert_eq!(messages[1], "tokens entry 3: has the same secret as entry 2: every token needs its own");
    }

    #[test]
    fn access_token_debug_hides_the_secret() {
        let token = AccessToken { secret: "do-not-print-me-please".into(), scope: TokenScope::Tenant("acme".into()) };
        let debug = format!("{token:?} {token:#?}");
        assert!(!debug.contains("do-not-print-me-please"));
        assert!(debug.contains("<redacted>") && debug.contains("acme"));
    }

    #[test]
    fn unknown_and_repeated_shim_keys() {
        let parsed = shim_error("log_level = 'warn'\nmemory = 5\n", 3, "memory", "unknown key 'memory' for [shim]");
        assert_eq!(parsed.config.shim.log_level, LogLevel::Warn);
        shim_error(
            "control_port = 1\ncontrol_port = 2\n",
            3,
            "control_port",
            "key 'control_port' is already set on line 2",
        );
    }

    #[test]
    fn ipv4_parsing() {
        assert_eq!(parse_ipv4("0.0.0.0"), Some([0; 4]));
        assert_eq!(parse_ipv4("1.22.233.4"), Some([1, 22, 233, 4]));
        for bad in ["", "1.2.3", "1.2.3.4.", "1.2.3.04", "1.2.3.+4", "1.2.3.1000", "1.2.3.256", "１.2.3.4"] {
            assert_eq!(parse_ipv4(bad), None, "{bad}");
        }
        assert_eq!(parse_ipv4_with_prefix("1.2.3.4/0"), Some(([1, 2, 3, 4], 0)));
        assert_eq!(parse_ipv4_with_prefix("1.2.3.4/+8"), None);
    }
}
