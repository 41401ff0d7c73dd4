//! The control API: its routes, the back end the shim implements, and the router that checks
//! who is asking before it touches a guest.
//!
//! Isolation rule: a guest a principal may not manage is answered exactly like a guest that
//! does not exist (404 "no guest named ..."), for every route, so its existence never leaks.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::auth::{Authenticator, Principal, Refusal};
use crate::http::{Method, Request, Response, Status, OCTET_STREAM, PROMETHEUS_TEXT};
use crate::metrics;
use crate::model::{
    Action, ConsoleChunk, CreateGuest, GuestInfo, GuestList, GuestState, GuestStats, GuestSummary, HostInfo, Image,
    NestedState,
};

/// What the shim provides. Every method must return promptly: the router calls them from the
/// control server's bounded poll step, between guest time slices.
pub trait GuestBackend {
    /// Every guest; the router filters them by principal.
    fn guests(&self) -> Vec<GuestSummary>;
    /// `Some(owner)` if the guest exists (`owner` is `None` for admin-only guests).
    fn owner(&self, name: &str) -> Option<Option<String>>;
    fn guest(&self, name: &str) -> Option<GuestInfo>;
    /// Defines a guest from `xl.cfg`-syntax text (the name comes from its `name` key) for
    /// `tenant`. It is not started.
    fn create(&mut self, config: &str, tenant: Option<&str>) -> Result<GuestInfo, BackendError>;
    /// Replaces the guest's kernel or initrd with uploaded bytes; only before its first start.
    /// The back end copies what it keeps: the request's buffer goes when the answer is sent.
    fn upload(&mut self, name: &str, image: Image, bytes: &[u8]) -> Result<GuestInfo, BackendError>;
    /// Starts the action and returns the state right after; `Shutdown` only asks the guest.
    fn act(&mut self, name: &str, action: Action) -> Result<GuestInfo, BackendError>;
    /// Forgets a guest that is not running, with its memory and console.
    fn remove(&mut self, name: &str) -> Result<(), BackendError>;
    /// Up to `max_len` console bytes from `offset` on (or from the oldest byte still held).
    fn console(&self, name: &str, offset: u64, max_len: usize) -> Option<ConsoleChunk>;
    fn stats(&self, name: &str) -> Option<GuestStats>;
    fn nested_state(&self, name: &str) -> Option<NestedState>;
    fn host(&self) -> HostInfo;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendError {
    NoSuchGuest,
    /// The action does not apply in the guest's current state; the text says why.
    WrongState(String),
    NameTaken,
    /// The configuration's errors, each as `LINE: key 'KEY': MESSAGE` (400).
    InvalidConfig(Vec<String>),
    /// Not enough memory (or another resource) for this now; the text says what (507).
    OutOfResources(String),
    /// The upload is larger than the back end takes (413).
    TooLarge(String),
    /// The request is well formed but cannot work, e.g. a kernel the loader refuses (400).
    Rejected(String),
    Unsupported(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Host,
    ListGuests,
    CreateGuest,
    GuestInfo,
    RemoveGuest,
    Upload(Image),
    Act(Action),
    Console,
    Stats,
    Nested,
    Metrics,
}

#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    pub method: Method,
    /// Path with `{name}` standing for a guest name, as in the OpenAPI document.
    pub pattern: &'static str,
    pub route: Route,
}

const fn spec(method: Method, pattern: &'static str, route: Route) -> RouteSpec {
    RouteSpec { method, pattern, route }
}

/// Every endpoint. The OpenAPI document is checked against this table by a test.
pub const ROUTES: &[RouteSpec] = &[
    spec(Method::Get, "/v1/host", Route::Host),
    spec(Method::Get, "/v1/guests", Route::ListGuests),
    spec(Method::Post, "/v1/guests", Route::CreateGuest),
    spec(Method::Get, "/v1/guests/{name}", Route::GuestInfo),
    spec(Method::Delete, "/v1/guests/{name}", Route::RemoveGuest),
    spec(Method::Put, "/v1/guests/{name}/kernel", Route::Upload(Image::Kernel)),
    spec(Method::Put, "/v1/guests/{name}/initrd", Route::Upload(Image::Initrd)),
    spec(Method::Post, "/v1/guests/{name}/start", Route::Act(Action::Start)),
    spec(Method::Post, "/v1/guests/{name}/pause", Route::Act(Action::Pause)),
    spec(Method::Post, "/v1/guests/{name}/resume", Route::Act(Action::Resume)),
    spec(Method::Post, "/v1/guests/{name}/shutdown", Route::Act(Action::Shutdown)),
    spec(Method::Post, "/v1/guests/{name}/destroy", Route::Act(Action::Destroy)),
    spec(Method::Post, "/v1/guests/{name}/reset", Route::Act(Action::Reset)),
    spec(Method::Get, "/v1/guests/{name}/console", Route::Console),
    spec(Method::Get, "/v1/guests/{name}/stats", Route::Stats),
    spec(Method::Get, "/v1/guests/{name}/nested", Route::Nested),
    spec(Method::Get, "/metrics", Route::Metrics),
];

#[derive(Debug, PartialEq, Eq)]
enum RouteMatch<'a> {
    Found(Route, Option<&'a str>),
    /// The path exists with other methods, listed for the `Allow` header.
    WrongMethod(String),
    NoSuchPath,
}

fn match_route<'a>(method: Method, path: &'a str) -> RouteMatch<'a> {
    let mut allowed: Vec<&str> = Vec::new();
    for spec in ROUTES {
        let Some(name) = match_pattern(spec.pattern, path) else { continue };
        if spec.method == method {
            return RouteMatch::Found(spec.route, name);
        }
        allowed.push(spec.method.as_str());
    }
    if allowed.is_empty() {
        RouteMatch::NoSuchPath
    } else {
        RouteMatch::WrongMethod(allowed.join(", "))
    }
}

/// `Some(captured name)` if `path` fits `pattern`.
fn match_pattern<'a>(pattern: &str, path: &'a str) -> Option<Option<&'a str>> {
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    let mut name = None;
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(name),
            (Some("{name}"), Some(segment)) if !segment.is_empty() => name = Some(segment),
            (Some(expected), Some(segment)) if expected == segment => {}
            _ => return None,
        }
    }
}

/// The boot configuration's rule for guest names; anything else cannot name a guest.
pub fn is_valid_guest_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiPolicy {
    /// Largest console slice one response carries.
    pub console_max_chunk: usize,
    /// Longest a console read may wait for new output (`wait_ms`).
    pub console_max_wait_ms: u64,
}

impl Default for ApiPolicy {
    fn default() -> Self {
        ApiPolicy { console_max_chunk: 64 * 1024, console_max_wait_ms: 30_000 }
    }
}

/// Counters the server and router keep about themselves, shown to the admin in /metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlCounters {
    /// Responses by status class: index 1 for 1xx ... 5 for 5xx.
    pub responses: [u64; 6],
    pub connections_accepted: u64,
    /// Connections closed at once because the peer already held too many.
    pub connections_refused: u64,
    /// Connections closed because a request or the idle period took too long.
    pub connections_timed_out: u64,
}

impl ControlCounters {
    pub fn count_response(&mut self, status: Status) {
        let class = usize::from(status.0 / 100).min(5);
        self.responses[class] += 1;
    }
}

/// The router's answer: now, or once the console has news or `deadline_ms` passes.
#[derive(Debug)]
pub enum Reply {
    Now(Response),
    Later { deadline_ms: u64 },
}

pub struct Router {
    auth: Authenticator,
    policy: ApiPolicy,
    pub counters: ControlCounters,
}

impl Router {
    pub fn new(auth: Authenticator, policy: ApiPolicy) -> Router {
        Router { auth, policy, counters: ControlCounters::default() }
    }

    pub fn auth_counters(&self) -> crate::auth::AuthCounters {
        self.auth.counters
    }

    /// Answers one request. `parked_deadline` is the deadline of an earlier `Reply::Later` for
    /// this same request, which the caller re-submits on later polls.
    pub fn handle<B: GuestBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        peer: IpAddr,
        request: &Request,
        now_ms: u64,
        parked_deadline: Option<u64>,
    ) -> Reply {
        let reply = self.dispatch(backend, peer, request, now_ms, parked_deadline);
        if let Reply::Now(response) = &reply {
            self.counters.count_response(response.status);
            log::debug!("control: {peer} {} {} -> {}", request.method.as_str(), request.path, response.status.0);
        }
        reply
    }

    fn dispatch<B: GuestBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        peer: IpAddr,
        request: &Request,
        now_ms: u64,
        parked_deadline: Option<u64>,
    ) -> Reply {
        let principal = match self.auth.authenticate(peer, request.authorization.as_ref(), now_ms) {
            Ok(principal) => principal,
            Err(refusal) => return Reply::Now(refusal_response(refusal)),
        };
        let (route, name) = match match_route(request.method, &request.path) {
            RouteMatch::Found(route, name) => (route, name),
            RouteMatch::WrongMethod(allowed) => {
                return Reply::Now(
                    Response::error(Status::METHOD_NOT_ALLOWED, "method not allowed on this path")
                        .with_header("Allow", allowed),
                )
            }
            RouteMatch::NoSuchPath => return Reply::Now(Response::error(Status::NOT_FOUND, "no such endpoint")),
        };
        let response = match (route, name) {
            (Route::Host, _) => Response::json(Status::OK, &backend.host()),
            (Route::ListGuests, _) => {
                let guests =
                    backend.guests().into_iter().filter(|g| principal.may_manage(g.tenant.as_deref())).collect();
                Response::json(Status::OK, &GuestList { guests })
            }
            (Route::CreateGuest, _) => create_guest(backend, &principal, request),
            (Route::Metrics, _) => self.metrics(backend, &principal),
            (route, Some(name)) => {
                if !visible(backend, &principal, name) {
                    return Reply::Now(no_such_guest(name));
                }
                match self.guest_route(backend, route, name, request, now_ms, parked_deadline) {
                    Ok(reply) => return reply,
                    Err(error) => backend_error_response(error, name),
                }
            }
            (_, None) => Response::error(Status::INTERNAL_ERROR, "route without a guest name"),
        };
        Reply::Now(response)
    }

    fn guest_route<B: GuestBackend + ?Sized>(
        &mut self,
        backend: &mut B,
        route: Route,
        name: &str,
        request: &Request,
        now_ms: u64,
        parked_deadline: Option<u64>,
    ) -> Result<Reply, BackendError> {
        let response = match route {
            Route::GuestInfo => Response::json(Status::OK, &backend.guest(name).ok_or(BackendError::NoSuchGuest)?),
            Route::RemoveGuest => {
                backend.remove(name)?;
                Response::empty(Status::NO_CONTENT)
            }
            Route::Upload(image) => {
                if request.content_length.is_none() {
                    return Ok(Reply::Now(Response::error(
                        Status::LENGTH_REQUIRED,
                        "an image upload needs a Content-Length header",
                    )));
                }
                if request.body.is_empty() {
                    return Ok(Reply::Now(Response::error(Status::BAD_REQUEST, "the image is empty")));
                }
                Response::json(Status::OK, &backend.upload(name, image, &request.body)?)
            }
            Route::Act(action) => {
                let info = backend.act(name, action)?;
                let status = if action == Action::Shutdown { Status::ACCEPTED } else { Status::OK };
                Response::json(status, &info)
            }
            Route::Console => return self.console(backend, name, request, now_ms, parked_deadline),
            Route::Stats => Response::json(Status::OK, &backend.stats(name).ok_or(BackendError::NoSuchGuest)?),
            Route::Nested => Response::json(Status::OK, &backend.nested_state(name).ok_or(BackendError::NoSuchGuest)?),
            Route::Host | Route::ListGuests | Route::CreateGuest | Route::Metrics => {
                Response::error(Status::INTERNAL_ERROR, "not a guest route")
            }
        };
        Ok(Reply::Now(response))
    }

    fn console<B: GuestBackend + ?Sized>(
        &self,
        backend: &B,
        name: &str,
        request: &Request,
        now_ms: u64,
        parked_deadline: Option<u64>,
    ) -> Result<Reply, BackendError> {
        let (offset, max, wait_ms) =
            match (query_number(request, "offset"), query_number(request, "max"), query_number(request, "wait_ms")) {
                (Ok(offset), Ok(max), Ok(wait_ms)) => (offset, max, wait_ms),
                _ => {
                    return Ok(Reply::Now(Response::error(
                        Status::BAD_REQUEST,
                        "offset, max and wait_ms must be unsigned decimal numbers",
                    )))
                }
            };
        let max_len = max.map_or(self.policy.console_max_chunk, |m| (m as usize).min(self.policy.console_max_chunk));
        let chunk = backend.console(name, offset.unwrap_or(0), max_len).ok_or(BackendError::NoSuchGuest)?;
        let state = backend.guest(name).map(|g| g.state).ok_or(BackendError::NoSuchGuest)?;
        let deadline = parked_deadline
            .unwrap_or_else(|| now_ms.saturating_add(wait_ms.unwrap_or(0).min(self.policy.console_max_wait_ms)));
        let guest_may_write = !matches!(state, GuestState::Stopped | GuestState::Created);
        if chunk.data.is_empty() && guest_may_write && now_ms < deadline {
            return Ok(Reply::Later { deadline_ms: deadline });
        }
        let response = Response::bytes(Status::OK, OCTET_STREAM, chunk.data)
            .with_header("Console-Offset", chunk.start.to_string())
            .with_header("Console-Next-Offset", chunk.next.to_string())
            .with_header("Guest-State", state.as_str().to_string());
        Ok(Reply::Now(response))
    }

    fn metrics<B: GuestBackend + ?Sized>(&self, backend: &B, principal: &Principal) -> Response {
        let guests: Vec<GuestSummary> =
            backend.guests().into_iter().filter(|g| principal.may_manage(g.tenant.as_deref())).collect();
        let stats: Vec<(GuestSummary, Option<GuestStats>)> = guests
            .into_iter()
            .map(|g| {
                let stats = backend.stats(&g.name);
                (g, stats)
            })
            .collect();
        let host = match principal {
            Principal::Admin => Some((backend.host(), self.counters, self.auth.counters)),
            Principal::Tenant(_) => None,
        };
        Response::bytes(Status::OK, PROMETHEUS_TEXT, metrics::render(&stats, host.as_ref()).into_bytes())
    }
}

fn visible<B: GuestBackend + ?Sized>(backend: &B, principal: &Principal, name: &str) -> bool {
    if !is_valid_guest_name(name) {
        return false;
    }
    match backend.owner(name) {
        Some(owner) => principal.may_manage(owner.as_deref()),
        None => false,
    }
}

fn create_guest<B: GuestBackend + ?Sized>(backend: &mut B, principal: &Principal, request: &Request) -> Response {
    let is_json = request.content_type.as_deref().is_none_or(|ct| {
        ct.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Response::error(Status::UNSUPPORTED_MEDIA_TYPE, "send the guest as Content-Type: application/json");
    }
    let create: CreateGuest = match serde_json::from_slice(&request.body) {
        Ok(create) => create,
        Err(_) => {
            return Response::error(Status::BAD_REQUEST, "body must be a JSON object {\"config\": \"...\"}");
        }
    };
    let tenant = match (principal, create.tenant.as_deref()) {
        (Principal::Admin, requested) => requested,
        (Principal::Tenant(own), None) => Some(own.as_str()),
        (Principal::Tenant(own), Some(requested)) if requested == own => Some(own.as_str()),
        (Principal::Tenant(_), Some(_)) => {
            return Response::error(Status::FORBIDDEN, "a tenant can only create guests of its own");
        }
    };
    if tenant.is_some_and(|t| !is_valid_guest_name(t)) {
        return Response::error(Status::BAD_REQUEST, "invalid tenant name");
    }
    match backend.create(&create.config, tenant) {
        Ok(info) => {
            let location = format!("/v1/guests/{}", info.name);
            Response::json(Status::CREATED, &info).with_header("Location", location)
        }
        Err(error) => backend_error_response(error, ""),
    }
}

fn query_number(request: &Request, key: &str) -> Result<Option<u64>, ()> {
    match request.query_param(key) {
        None => Ok(None),
        Some(text) if !text.is_empty() && text.len() <= 19 && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().map(Some).map_err(|_| ())
        }
        Some(_) => Err(()),
    }
}

fn no_such_guest(name: &str) -> Response {
    // The name is echoed only when it is a valid guest name, so odd bytes never reach a client's terminal.
    if is_valid_guest_name(name) {
        Response::error(Status::NOT_FOUND, &format!("no guest named '{name}'"))
    } else {
        Response::error(Status::NOT_FOUND, "no such guest")
    }
}

fn backend_error_response(error: BackendError, name: &str) -> Response {
    match error {
        BackendError::NoSuchGuest => no_such_guest(name),
        BackendError::WrongState(why) => Response::error(Status::CONFLICT, &why),
        BackendError::NameTaken => Response::error(Status::CONFLICT, "a guest with this name already exists"),
        BackendError::InvalidConfig(errors) => {
            Response::error(Status::BAD_REQUEST, &format!("invalid configuration: {}", errors.join("; ")))
        }
        BackendError::OutOfResources(why) => Response::error(Status::INSUFFICIENT_STORAGE, &why),
        BackendError::TooLarge(why) => Response::error(Status::PAYLOAD_TOO_LARGE, &why),
        BackendError::Rejected(why) => Response::error(Status::BAD_REQUEST, &why),
        BackendError::Unsupported(why) => Response::error(Status::NOT_IMPLEMENTED, &why),
    }
}

fn refusal_response(refusal: Refusal) -> Response {
    match refusal {
        Refusal::RateLimited { retry_after_ms } => Response::error(Status::TOO_MANY_REQUESTS, refusal.reason())
            .with_header("Retry-After", retry_after_ms.div_ceil(1000).to_string()),
        _ => Response::error(Status::UNAUTHORIZED, refusal.reason()).with_header("WWW-Authenticate", "Bearer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_capture_the_guest_name_and_nothing_else() {
        assert_eq!(match_pattern("/v1/guests/{name}", "/v1/guests/web"), Some(Some("web")));
        assert_eq!(match_pattern("/v1/guests/{name}/start", "/v1/guests/web/start"), Some(Some("web")));
        assert_eq!(match_pattern("/v1/guests", "/v1/guests"), Some(None));
        assert_eq!(match_pattern("/v1/guests/{name}", "/v1/guests/"), None);
        assert_eq!(match_pattern("/v1/guests/{name}", "/v1/guests/a/b"), None);
        assert_eq!(match_pattern("/v1/guests", "/v1/guests/"), None);
        assert_eq!(match_pattern("/metrics", "/metrics/x"), None);
    }

    #[test]
    fn routes_resolve_by_method_and_path() {
        assert_eq!(
            match_route(Method::Post, "/v1/guests/a/pause"),
            RouteMatch::Found(Route::Act(Action::Pause), Some("a"))
        );
        assert_eq!(match_route(Method::Delete, "/v1/guests"), RouteMatch::WrongMethod("GET, POST".into()));
        assert_eq!(match_route(Method::Other, "/v1/guests/a"), RouteMatch::WrongMethod("GET, DELETE".into()));
        assert_eq!(match_route(Method::Get, "/v2/guests"), RouteMatch::NoSuchPath);
    }

    #[test]
    fn every_route_has_a_distinct_method_and_pattern() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(a.method != b.method || a.pattern != b.pattern, "{} {} twice", a.method.as_str(), a.pattern);
            }
        }
    }

    #[test]
    fn guest_names_follow_the_boot_configuration_rule() {
        assert!(is_valid_guest_name("xen-l1.a_b"));
        assert!(!is_valid_guest_name(""));
        assert!(!is_valid_guest_name("a/b"));
        assert!(!is_valid_guest_name("a b"));
        assert!(!is_valid_guest_name(&"x".repeat(65)));
    }
}
