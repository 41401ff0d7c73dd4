//! Bearer tokens bound to tenants, and a per-peer limit on failed attempts.
//!
//! Tokens only ever live in [`Secret`], which has no `Display` and a redacted `Debug`, so no
//! format string can put one in a log. There is no clock here: callers pass milliseconds.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

/// Bytes that must never be shown: a configured token, or what a client presented as one.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Who a request acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(String),
}

impl Principal {
    /// Whether this principal may see and manage a guest owned by `owner` (`None`: admin only).
    pub fn may_manage(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(tenant) => owner == Some(tenant.as_str()),
        }
    }

    /// The tenant a guest created by this principal belongs to.
    pub fn owned_tenant(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant(tenant) => Some(tenant),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Admin => f.write_str("admin"),
            Principal::Tenant(tenant) => write!(f, "tenant {tenant}"),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    entries: Vec<(Secret, Principal)>,
}

impl TokenTable {
    pub fn new() -> TokenTable {
        TokenTable::default()
    }

    /// Empty secrets are ignored: they would match a bare "Bearer " header.
    pub fn add(&mut self, principal: Principal, secret: &[u8]) {
        if !secret.is_empty() {
            self.entries.push((Secret::new(secret.to_vec()), principal));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Compares against every entry, each in time independent of where the bytes differ, so the
    /// answer's timing tells an attacker neither which token nor how much of it was right.
    fn lookup(&self, presented: &[u8]) -> Option<&Principal> {
        let mut found = None;
        for (secret, principal) in &self.entries {
            if constant_time_eq(secret.expose(), presented) {
                found = Some(principal);
            }
        }
        found
    }
}

fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut difference = u64::from(expected.len() != presented.len());
    for (i, &byte) in expected.iter().enumerate() {
        difference |= u64::from(byte ^ presented.get(i).copied().unwrap_or(0));
    }
    core::hint::black_box(difference) == 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// Failures from one peer within `window_ms` that trigger a lockout.
    pub max_failures: u32,
    pub window_ms: u64,
    pub lockout_ms: u64,
    /// Peers remembered at once; the table never grows beyond this.
    pub max_tracked_peers: usize,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        RateLimitPolicy { max_failures: 5, window_ms: 60_000, lockout_ms: 60_000, max_tracked_peers: 256 }
    }
}

#[derive(Clone, Debug)]
struct PeerRecord {
    peer: IpAddr,
    failures: u32,
    window_start_ms: u64,
    locked_until_ms: u64,
    last_seen_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed,
    Invalid,
    RateLimited { retry_after_ms: u64 },
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing bearer token",
            Refusal::Malformed => "malformed Authorization header; expected 'Bearer TOKEN'",
            Refusal::Invalid => "invalid token",
            Refusal::RateLimited { .. } => "too many failed attempts; try again later",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthCounters {
    pub failures: u64,
    pub lockouts: u64,
    pub rate_limited: u64,
}

pub struct Authenticator {
    tokens: TokenTable,
    policy: RateLimitPolicy,
    peers: Vec<PeerRecord>,
    pub counters: AuthCounters,
}

impl Authenticator {
    pub fn new(tokens: TokenTable, policy: RateLimitPolicy) -> Authenticator {
        Authenticator { tokens, policy, peers: Vec::new(), counters: AuthCounters::default() }
    }

    pub fn authenticate(
        &mut self,
        peer: IpAddr,
        authorization: Option<&Secret>,
        now_ms: u64,
    ) -> Result<Principal, Refusal> {
        if let Some(record) = self.peers.iter().find(|r| r.peer == peer) {
            if now_ms < record.locked_until_ms {
                self.counters.rate_limited += 1;
                log::debug!("control: {peer} is locked out after failed attempts");
                return Err(Refusal::RateLimited { retry_after_ms: record.locked_until_ms - now_ms });
            }
        }
        let outcome = match authorization {
            None => Err(Refusal::Missing),
            Some(header) => match bearer_token(header.expose()) {
                None => Err(Refusal::Malformed),
                Some(token) => self.tokens.lookup(token).cloned().ok_or(Refusal::Invalid),
            },
        };
        match &outcome {
            Ok(_) => self.peers.retain(|r| r.peer != peer),
            Err(refusal) => self.record_failure(peer, *refusal, now_ms),
        }
        outcome
    }

    fn record_failure(&mut self, peer: IpAddr, refusal: Refusal, now_ms: u64) {
        self.counters.failures += 1;
        let policy = self.policy;
        let index = match self.peers.iter().position(|r| r.peer == peer) {
            Some(index) => index,
            None => {
                if self.peers.len() >= policy.max_tracked_peers.max(1) {
                    self.forget_one_peer(now_ms);
                }
                self.peers.push(PeerRecord {
                    peer,
                    failures: 0,
                    window_start_ms: now_ms,
                    locked_until_ms: 0,
                    last_seen_ms: now_ms,
                });
                self.peers.len() - 1
            }
        };
        let record = &mut self.peers[index];
        if now_ms.saturating_sub(record.window_start_ms) >= policy.window_ms {
            record.failures = 0;
            record.window_start_ms = now_ms;
        }
        record.failures += 1;
        record.last_seen_ms = now_ms;
        log::warn!(
            "control: refused a request from {peer}: {} ({} recent failures)",
            refusal.reason(),
            record.failures
        );
        if record.failures >= policy.max_failures {
            record.locked_until_ms = now_ms + policy.lockout_ms;
            record.failures = 0;
            record.window_start_ms = now_ms;
            self.counters.lockouts += 1;
            log::warn!("control: {peer} locked out for {} ms after repeated failures", policy.lockout_ms);
        }
    }

    /// Makes room by dropping the peer seen longest ago, preferring one that is not locked out.
    fn forget_one_peer(&mut self, now_ms: u64) {
        let victim = self
            .peers
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| (r.locked_until_ms > now_ms, r.last_seen_ms))
            .map(|(index, _)| index);
        if let Some(index) = victim {
            self.peers.swap_remove(index);
        }
    }
}

fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    fn peer(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn authenticator(policy: RateLimitPolicy) -> Authenticator {
        let mut tokens = TokenTable::new();
        tokens.add(Principal::Admin, b"admin-secret-0123456789");
        tokens.add(Principal::Tenant("acme".into()), b"acme-secret-0123456789");
        Authenticator::new(tokens, policy)
    }

    fn bearer(token: &str) -> Secret {
        Secret::new(alloc::format!("Bearer {token}").into_bytes())
    }

    #[test]
    fn tokens_map_to_their_principal() {
        let mut auth = authenticator(RateLimitPolicy::default());
        assert_eq!(auth.authenticate(peer(1), Some(&bearer("admin-secret-0123456789")), 0), Ok(Principal::Admin));
        assert_eq!(
            auth.authenticate(peer(1), Some(&bearer("acme-secret-0123456789")), 0),
            Ok(Principal::Tenant("acme".into()))
        );
        let lowercase_scheme = Secret::new(b"bearer   acme-secret-0123456789 ".to_vec());
        assert_eq!(auth.authenticate(peer(1), Some(&lowercase_scheme), 0), Ok(Principal::Tenant("acme".into())));
    }

    #[test]
    fn wrong_missing_and_malformed_tokens_are_refused() {
        let mut auth = authenticator(RateLimitPolicy::default());
        assert_eq!(auth.authenticate(peer(1), None, 0), Err(Refusal::Missing));
        assert_eq!(auth.authenticate(peer(1), Some(&bearer("acme-secret-012345678")), 0), Err(Refusal::Invalid));
        assert_eq!(auth.authenticate(peer(1), Some(&bearer("acme-secret-01234567890")), 0), Err(Refusal::Invalid));
        let basic = Secret::new(b"Basic YWRtaW46YWRtaW4=".to_vec());
        assert_eq!(auth.authenticate(peer(1), Some(&basic), 0), Err(Refusal::Malformed));
        assert_eq!(auth.authenticate(peer(1), Some(&Secret::new(b"Bearer ".to_vec())), 0), Err(Refusal::Malformed));
        assert_eq!(auth.counters.failures, 5);
    }

    #[test]
    fn repeated_failures_lock_out_only_that_peer_until_the_lockout_ends() {
        let policy = RateLimitPolicy { max_failures: 3, window_ms: 1_000, lockout_ms: 5_000, max_tracked_peers: 8 };
        let mut auth = authenticator(policy);
        let good = bearer("admin-secret-0123456789");
        for t in 0..3 {
            assert_eq!(auth.authenticate(peer(1), Some(&bearer("nope")), t), Err(Refusal::Invalid));
        }
        assert_eq!(
            auth.authenticate(peer(1), Some(&good), 10),
            Err(Refusal::RateLimited { retry_after_ms: 4_992 }),
            "a locked-out peer is refused even with a valid token"
        );
        assert_eq!(auth.authenticate(peer(2), Some(&good), 10), Ok(Principal::Admin));
        assert_eq!(auth.authenticate(peer(1), Some(&good), 5_002), Ok(Principal::Admin));
        assert_eq!(auth.counters.lockouts, 1);
        assert_eq!(auth.counters.rate_limited, 1);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock_out() {
        let policy = RateLimitPolicy { max_failures: 3, window_ms: 1_000, lockout_ms: 5_000, max_tracked_peers: 8 };
        let mut auth = authenticator(policy);
        for t in [0, 600, 1_200, 1_800, 2_400, 3_000] {
            assert_eq!(auth.authenticate(peer(1), Some(&bearer("nope")), t), Err(Refusal::Invalid));
        }
        assert_eq!(auth.counters.lockouts, 0);
    }

    #[test]
    fn the_peer_table_stays_bounded_and_keeps_locked_peers() {
        let policy = RateLimitPolicy { max_failures: 2, window_ms: 1_000, lockout_ms: 60_000, max_tracked_peers: 4 };
        let mut auth = authenticator(policy);
        for _ in 0..2 {
            let _ = auth.authenticate(peer(1), None, 0);
        }
        for last in 2..50 {
            let _ = auth.authenticate(peer(last), None, 1);
        }
        assert!(auth.peers.len() <= 4);
        assert!(matches!(auth.authenticate(peer(1), None, 2), Err(Refusal::RateLimited { .. })));
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn secrets_never_format() {
        let secret = Secret::new(b"admin-secret-0123456789".to_vec());
        assert!(!alloc::format!("{secret:?}").contains("admin-secret"));
    }
}
