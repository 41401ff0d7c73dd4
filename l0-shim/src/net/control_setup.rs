//! From the boot configuration's `[shim]` keys to the control server's settings.

use core::fmt;

use matryoshka_config::{NetworkConfig, ShimSettings, TokenScope};
use matryoshka_control::auth::{Principal, TokenTable};
use matryoshka_control::http::Limits;
use matryoshka_control::server::{Addressing, ServerConfig};
use matryoshka_control::session::SessionLimits;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// The largest kernel or initrd the shim takes in one upload. A request is
/// held whole in the shim's heap (16 MiB) before it is copied to frames of
/// its own, so this is half of it; larger ones are answered 413.
pub const MAX_UPLOAD_BYTES: usize = 8 << 20;

/// What the control server is started with.
#[derive(Debug)]
pub struct ControlSetup {
    pub server: ServerConfig,
    pub addressing: Addressing,
    pub tokens: TokenTable,
    pub admin_tokens: usize,
    pub tenant_tokens: usize,
}

/// Why there is nothing to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotServing {
    /// Every request would be refused: the server is not started at all.
    NoTokens,
}

impl fmt::Display for NotServing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotServing::NoTokens => f.write_str("no [shim] tokens are configured, so nobody could use it"),
        }
    }
}

pub fn control_setup(settings: &ShimSettings) -> Result<ControlSetup, NotServing> {
    if settings.tokens.is_empty() {
        return Err(NotServing::NoTokens);
    }
    let mut tokens = TokenTable::new();
    let (mut admin_tokens, mut tenant_tokens) = (0, 0);
    for token in &settings.tokens {
        let principal = match &token.scope {
            TokenScope::Admin => {
                admin_tokens += 1;
                Principal::Admin
            }
            TokenScope::Tenant(tenant) => {
                tenant_tokens += 1;
                Principal::Tenant(tenant.clone())
            }
        };
        tokens.add(principal, token.secret.as_bytes());
    }
    let defaults = ServerConfig::default();
    let session = SessionLimits {
        http: Limits { max_upload_bytes: MAX_UPLOAD_BYTES, ..defaults.session.http },
        ..defaults.session
    };
    let server = ServerConfig { port: settings.control_port, session, ..defaults };
    Ok(ControlSetup { server, addressing: addressing(settings.network), tokens, admin_tokens, tenant_tokens })
}

fn addressing(network: NetworkConfig) -> Addressing {
    match network {
        NetworkConfig::Dhcp => Addressing::Dhcp,
        NetworkConfig::Static { address, prefix_len, gateway } => Addressing::Static {
            address: Ipv4Cidr::new(Ipv4Address::from(address), prefix_len),
            gateway: gateway.map(Ipv4Address::from),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use matryoshka_config::AccessToken;

    fn settings(network: NetworkConfig, tokens: &[(&str, TokenScope)]) -> ShimSettings {
        ShimSettings {
            network,
            control_port: 7123,
            tokens: tokens
                .iter()
                .map(|(secret, scope)| AccessToken { secret: secret.to_string(), scope: scope.clone() })
                .collect(),
            ..ShimSettings::default()
        }
    }

    #[test]
    fn static_addresses_tokens_and_port_carry_over() {
        let network = NetworkConfig::Static { address: [10, 0, 2, 15], prefix_len: 24, gateway: Some([10, 0, 2, 2]) };
        let setup = control_setup(&settings(
            network,
            &[
                ("admin-secret-0123456789", TokenScope::Admin),
                ("acme-secret-0123456789", TokenScope::Tenant("acme".into())),
                ("acme-second-0123456789", TokenScope::Tenant("acme".into())),
            ],
        ))
        .unwrap();
        assert_eq!(setup.server.port, 7123);
        assert_eq!(setup.server.max_connections, ServerConfig::default().max_connections);
        assert_eq!(setup.server.session.http.max_upload_bytes, MAX_UPLOAD_BYTES, "uploads fit the shim's heap");
        assert_eq!(
            setup.addressing,
            Addressing::Static {
                address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
                gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
            }
        );
        assert_eq!((setup.admin_tokens, setup.tenant_tokens, setup.tokens.len()), (1, 2, 3));
        let without_gateway = NetworkConfig::Static { address: [192, 168, 7, 2], prefix_len: 32, gateway: None };
        assert_eq!(
            addressing(without_gateway),
            Addressing::Static { address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 7, 2), 32), gateway: None }
        );
    }

    #[test]
    fn dhcp_is_the_default_and_no_tokens_means_no_server() {
        let setup = control_setup(&settings(NetworkConfig::Dhcp, &[("admin-secret-0123456789", TokenScope::Admin)]));
        assert_eq!(setup.unwrap().addressing, Addressing::Dhcp);
        let refused = control_setup(&ShimSettings::default()).unwrap_err();
        assert_eq!(refused, NotServing::NoTokens);
        assert!(refused.to_string().contains("no [shim] tokens"));
    }

    #[test]
    fn the_setup_never_shows_a_secret() {
        let setup = control_setup(&settings(NetworkConfig::Dhcp, &[("do-not-print-this-secret", TokenScope::Admin)]));
        let shown = alloc::format!("{setup:?}");
        assert!(!shown.contains("do-not-print-this-secret"), "{shown}");
    }
}
