//! Host tests that go through the whole request path: bytes in, router, fake back end, bytes out.

mod api_tests;
mod http_tests;
mod logging;
mod openapi;
mod server_tests;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use crate::api::{ApiPolicy, Router};
use crate::auth::{Authenticator, Principal, RateLimitPolicy, TokenTable};
use crate::fake::FakeBackend;
use crate::session::{Session, SessionLimits};

pub(crate) const ADMIN: &str = "admin-token-0123456789abcdef";
pub(crate) const ACME: &str = "acme-token-0123456789abcdef";
pub(crate) const GLOBEX: &str = "globex-token-0123456789abcdef";
pub(crate) const ALL_TOKENS: [&str; 3] = [ADMIN, ACME, GLOBEX];

pub(crate) fn tokens() -> TokenTable {
    let mut tokens = TokenTable::new();
    tokens.add(Principal::Admin, ADMIN.as_bytes());
    tokens.add(Principal::Tenant("acme".into()), ACME.as_bytes());
    tokens.add(Principal::Tenant("globex".into()), GLOBEX.as_bytes());
    tokens
}

pub(crate) fn router() -> Router {
    logging::install();
    Router::new(Authenticator::new(tokens(), RateLimitPolicy::default()), ApiPolicy::default())
}

/// acme-web belongs to acme, globex-db to globex, infra to the admin alone.
pub(crate) fn backend() -> FakeBackend {
    FakeBackend::new(4096)
        .with_guest("acme-web", Some("acme"))
        .with_guest("globex-db", Some("globex"))
        .with_guest("infra", None)
}

pub(crate) fn peer() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
}

#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        core::str::from_utf8(&self.body).expect("utf-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// One response from the front of `bytes`, and its length; every response the server writes
/// carries a Content-Length, so anything else is a bug the tests should see.
pub(crate) fn parse_answer(bytes: &[u8]) -> Option<(Answer, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(bytes).ok()? else { return None };
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| (String::from(h.name), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let status = response.code?;
    let length: usize = match headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        Some((_, v)) => v.parse().ok()?,
        None if status == 100 || status == 204 => 0,
        None => panic!("response without Content-Length: {headers:?}"),
    };
    let body = bytes.get(head_len..head_len + length)?.to_vec();
    Some((Answer { status, headers, body }, head_len + length))
}

/// Feeds `raw` to a fresh session (in one piece) and steps it until it answers or `steps` run out.
pub(crate) fn exchange(router: &mut Router, backend: &mut FakeBackend, raw: &[u8]) -> Option<Answer> {
    let mut session = Session::new(peer(), SessionLimits::default(), 0);
    let mut input = raw;
    let mut output = Vec::new();
    for now in 0..64 {
        let take = session.room().min(input.len());
        session.receive(&input[..take], now);
        input = &input[take..];
        session.step(router, backend, now);
        let pending = session.pending_output().len();
        output.extend_from_slice(session.pending_output());
        session.sent(pending, now);
        if let Some((answer, _)) = parse_answer(&output).filter(|(a, _)| a.status != 100) {
            return Some(answer);
        }
        if let Some((_, used)) = parse_answer(&output) {
            output.drain(..used);
        }
    }
    None
}

pub(crate) fn call(
    router: &mut Router,
    backend: &mut FakeBackend,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Answer {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n", body.len());
    if let Some(token) = token {
        raw += &format!("Authorization: Bearer {token}\r\n");
    }
    raw += "\r\n";
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    exchange(router, backend, &raw).expect("an answer")
}
