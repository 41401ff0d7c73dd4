use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::{backend, call, exchange, router, ACME, ADMIN, GLOBEX};
use crate::api::ROUTES;
use crate::http::Method;
use crate::model::{GuestInfo, GuestList, GuestState};
use crate::session::{Session, SessionLimits};

fn names(list: &GuestList) -> Vec<&str> {
    list.guests.iter().map(|g| g.name.as_str()).collect()
}

fn listed(token: &str) -> Vec<String> {
    let answer = call(&mut router(), &mut backend(), "GET", "/v1/guests", Some(token), b"");
    assert_eq!(answer.status, 200);
    let list: GuestList = serde_json::from_slice(&answer.body).unwrap();
    names(&list).into_iter().map(String::from).collect()
}

#[test]
fn each_tenant_lists_only_its_own_guests_and_the_admin_lists_all() {
    assert_eq!(listed(ACME), ["acme-web"]);
    assert_eq!(listed(GLOBEX), ["globex-db"]);
    assert_eq!(listed(ADMIN), ["acme-web", "globex-db", "infra"]);
}

fn concrete(pattern: &str, name: &str) -> String {
    pattern.replace("{name}", name)
}

#[test]
fn another_tenants_guest_answers_exactly_like_a_missing_one_on_every_route() {
    for route in ROUTES.iter().filter(|r| r.pattern.contains("{name}")) {
        for hidden in ["globex-db", "infra"] {
            let (mut router, mut backend) = (router(), backend());
            backend.write_console(hidden, b"secret console output");
            let method = route.method.as_str();
            let body: &[u8] = if route.method == Method::Put { b"kernel" } else { b"" };
            let hidden_answer =
                call(&mut router, &mut backend, method, &concrete(route.pattern, hidden), Some(ACME), body);
            let missing_answer =
                call(&mut router, &mut backend, method, &concrete(route.pattern, "no-such"), Some(ACME), body);
            assert_eq!(hidden_answer.status, 404, "{method} {} on {hidden}", route.pattern);
            assert_eq!(hidden_answer.text().replace(hidden, "no-such"), missing_answer.text());
            assert_eq!(backend.state(hidden), Some(GuestState::Running), "{method} {} acted", route.pattern);
            assert_eq!(backend.kernel_bytes(hidden), None);
        }
    }
}

#[test]
fn a_tenant_manages_its_own_guest() {
    let (mut router, mut backend) = (router(), backend());
    backend.write_console("acme-web", b"hello\n");
    let answer = call(&mut router, &mut backend, "POST", "/v1/guests/acme-web/pause", Some(ACME), b"");
    assert_eq!(answer.status, 200);
    let info: GuestInfo = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(info.state, GuestState::Paused);
    assert_eq!(backend.state("acme-web"), Some(GuestState::Paused));
    let console = call(&mut router, &mut backend, "GET", "/v1/guests/acme-web/console", Some(ACME), b"");
    assert_eq!(console.body, b"hello\n");
}

#[test]
fn missing_wrong_and_malformed_tokens_are_refused_before_anything_runs() {
    let (mut router, mut backend) = (router(), backend());
    for header in ["", "Authorization: Bearer wrong-token-0123456789\r\n", "Authorization: Basic YTpi\r\n"] {
        let raw = format!("POST /v1/guests/acme-web/pause HTTP/1.1\r\n{header}\r\n");
        let answer = exchange(&mut router, &mut backend, raw.as_bytes()).unwrap();
        assert_eq!(answer.status, 401, "{header}");
        assert_eq!(answer.header("WWW-Authenticate"), Some("Bearer"));
        assert!(answer.json()["error"].as_str().unwrap().contains("token") || answer.text().contains("Bearer"));
    }
    assert_eq!(backend.state("acme-web"), Some(GuestState::Running));
    // The sixth failure in a row locks the address out, even for a valid token.
    for _ in 0..3 {
        call(&mut router, &mut backend, "GET", "/v1/guests", Some("nope-nope-nope-nope"), b"");
    }
    let answer = call(&mut router, &mut backend, "GET", "/v1/guests", Some(ACME), b"");
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("Retry-After"), Some("60"));
}

#[test]
fn lifecycle_actions_follow_the_guest_state() {
    let (mut router, mut backend) = (router(), backend());
    let mut act = |action: &str| {
        let path = format!("/v1/guests/acme-web/{action}");
        let answer = call(&mut router, &mut backend, "POST", &path, Some(ACME), b"");
        let state = serde_json::from_slice::<GuestInfo>(&answer.body).ok().map(|info| info.state);
        (answer.status, state)
    };
    assert_eq!(act("resume").0, 409);
    assert_eq!(act("pause"), (200, Some(GuestState::Paused)));
    assert_eq!(act("resume"), (200, Some(GuestState::Running)));
    assert_eq!(act("reset"), (200, Some(GuestState::Running)));
    assert_eq!(act("shutdown"), (202, Some(GuestState::ShuttingDown)));
    assert_eq!(act("destroy"), (200, Some(GuestState::Stopped)));
    assert_eq!(act("destroy").0, 409);
    assert_eq!(act("start"), (200, Some(GuestState::Running)));
}

#[test]
fn a_tenant_creates_uploads_starts_and_removes_a_guest_it_alone_sees() {
    let (mut router, mut backend) = (router(), backend());
    let create = br#"{"config": "name = \"acme-new\"\nmemory = 128\nvcpus = 2\n"}"#;
    let answer = call(&mut router, &mut backend, "POST", "/v1/guests", Some(ACME), create);
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(answer.header("Location"), Some("/v1/guests/acme-new"));
    let info: GuestInfo = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!((info.tenant.as_deref(), info.state, info.vcpus), (Some("acme"), GuestState::Created, 2));

    assert_eq!(call(&mut router, &mut backend, "GET", "/v1/guests/acme-new", Some(GLOBEX), b"").status, 404);
    let start = call(&mut router, &mut backend, "POST", "/v1/guests/acme-new/start", Some(ACME), b"");
    assert_eq!(start.status, 409, "no kernel yet");
    let kernel = [0x7fu8, b'E', b'L', b'F', 0, 1, 2, 3];
    let upload = call(&mut router, &mut backend, "PUT", "/v1/guests/acme-new/kernel", Some(ACME), &kernel);
    assert_eq!(upload.status, 200, "{}", upload.text());
    assert_eq!(backend.kernel_bytes("acme-new"), Some(&kernel[..]));
    assert_eq!(call(&mut router, &mut backend, "POST", "/v1/guests/acme-new/start", Some(ACME), b"").status, 200);
    let late = call(&mut router, &mut backend, "PUT", "/v1/guests/acme-new/initrd", Some(ACME), b"x");
    assert_eq!(late.status, 409);
    assert_eq!(call(&mut router, &mut backend, "DELETE", "/v1/guests/acme-new", Some(ACME), b"").status, 409);
    call(&mut router, &mut backend, "POST", "/v1/guests/acme-new/destroy", Some(ACME), b"");
    assert_eq!(call(&mut router, &mut backend, "DELETE", "/v1/guests/acme-new", Some(ACME), b"").status, 204);
    assert_eq!(backend.state("acme-new"), None);
}

#[test]
fn too_large_images_and_short_memory_are_refused_and_the_guest_stays_defined() {
    let (mut router, mut backend) = (router(), backend());
    let config = br#"{"config": "name = \"acme-big\"\nmemory = 1024\n"}"#;
    assert_eq!(call(&mut router, &mut backend, "POST", "/v1/guests", Some(ACME), config).status, 201);
    let huge = alloc::vec![0u8; crate::fake::FAKE_MAX_IMAGE_BYTES + 1];
    let refused = call(&mut router, &mut backend, "PUT", "/v1/guests/acme-big/kernel", Some(ACME), &huge);
    assert_eq!(refused.status, 413, "{}", refused.text());
    assert_eq!(backend.kernel_bytes("acme-big"), None, "nothing kept of a refused upload");
    let kernel = [1u8, 2, 3];
    assert_eq!(call(&mut router, &mut backend, "PUT", "/v1/guests/acme-big/kernel", Some(ACME), &kernel).status, 200);
    let start = call(&mut router, &mut backend, "POST", "/v1/guests/acme-big/start", Some(ACME), b"");
    assert_eq!(start.status, 507, "{}", start.text());
    assert!(start.text().contains("1024 MiB wanted"), "{}", start.text());
    assert_eq!(backend.state("acme-big"), Some(GuestState::Created), "a failed start loses nothing");
    assert_eq!(backend.kernel_bytes("acme-big"), Some(&kernel[..]));
}

#[test]
fn bad_creations_are_refused_with_reasons() {
    let (mut router, mut backend) = (router(), backend());
    let mut create =
        |token: &str, body: &[u8]| call(&mut router, &mut backend, "POST", "/v1/guests", Some(token), body);
    let other_tenant = create(ACME, br#"{"config": "name = \"x\"\nmemory = 1\n", "tenant": "globex"}"#);
    assert_eq!(other_tenant.status, 403);
    let invalid = create(ACME, br#"{"config": "name = \"x\"\nmemory = zero\n"}"#);
    assert_eq!(invalid.status, 400);
    assert!(invalid.text().contains("key 'memory'"), "{}", invalid.text());
    assert_eq!(create(ACME, b"{not json").status, 400);
    assert_eq!(create(ACME, br#"{"config": "name = \"x\"\nmemory = 1\n", "extra": 1}"#).status, 400);
    assert_eq!(create(ACME, br#"{"config": "name = \"acme-web\"\nmemory = 1\n"}"#).status, 409);
    let for_globex = create(ADMIN, br#"{"config": "name = \"g2\"\nmemory = 1\n", "tenant": "globex"}"#);
    assert_eq!(for_globex.status, 201);
    assert_eq!(listed_with(&mut router, &mut backend, GLOBEX), ["globex-db", "g2"]);

    let raw = b"POST /v1/guests HTTP/1.1\r\nAuthorization: Bearer acme-token-0123456789abcdef\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(exchange(&mut router, &mut backend, raw).unwrap().status, 415);
    let raw = b"PUT /v1/guests/acme-web/kernel HTTP/1.1\r\nAuthorization: Bearer acme-token-0123456789abcdef\r\n\r\n";
    assert_eq!(exchange(&mut router, &mut backend, raw).unwrap().status, 411);
}

fn listed_with(router: &mut crate::api::Router, backend: &mut crate::fake::FakeBackend, token: &str) -> Vec<String> {
    let answer = call(router, backend, "GET", "/v1/guests", Some(token), b"");
    let list: GuestList = serde_json::from_slice(&answer.body).unwrap();
    names(&list).into_iter().map(String::from).collect()
}

#[test]
fn console_reads_from_an_offset_and_reports_overwritten_output() {
    let (mut router, mut backend) = (router(), backend());
    backend.write_console("acme-web", b"0123456789");
    let mut read = |query: &str| {
        let path = format!("/v1/guests/acme-web/console{query}");
        let answer = call(&mut router, &mut backend, "GET", &path, Some(ACME), b"");
        assert_eq!(answer.status, 200, "{query}");
        let offset: u64 = answer.header("Console-Offset").unwrap().parse().unwrap();
        let next: u64 = answer.header("Console-Next-Offset").unwrap().parse().unwrap();
        assert_eq!(answer.header("Guest-State"), Some("running"));
        (offset, next, String::from_utf8(answer.body).unwrap())
    };
    assert_eq!(read(""), (0, 10, "0123456789".into()));
    assert_eq!(read("?offset=4&max=3"), (4, 7, "456".into()));
    assert_eq!(read("?offset=10"), (10, 10, String::new()));
    assert_eq!(read("?offset=99"), (10, 10, String::new()));
    let bad = call(&mut router, &mut backend, "GET", "/v1/guests/acme-web/console?offset=-1", Some(ACME), b"");
    assert_eq!(bad.status, 400);

    backend.write_console("acme-web", &[b'x'; 4096]);
    let answer = call(&mut router, &mut backend, "GET", "/v1/guests/acme-web/console?offset=2", Some(ACME), b"");
    assert_eq!(answer.header("Console-Offset"), Some("10"), "the first 10 bytes were overwritten");
}

#[test]
fn a_console_follow_waits_without_blocking_and_answers_when_output_arrives() {
    let (mut router, mut backend) = (router(), backend());
    let raw = format!(
        "GET /v1/guests/acme-web/console?offset=0&wait_ms=5000 HTTP/1.1\r\nAuthorization: Bearer {ACME}\r\n\r\n"
    );
    let mut session = Session::new(super::peer(), SessionLimits::default(), 0);
    session.receive(raw.as_bytes(), 0);
    session.step(&mut router, &mut backend, 0);
    assert!(session.is_parked());
    session.step(&mut router, &mut backend, 1_000);
    assert!(session.pending_output().is_empty(), "no output yet, so no answer yet");
    backend.write_console("acme-web", b"boot\n");
    session.step(&mut router, &mut backend, 1_001);
    let (answer, _) = super::parse_answer(session.pending_output()).unwrap();
    assert_eq!(answer.body, b"boot\n");
    assert_eq!(answer.header("Console-Next-Offset"), Some("5"));

    let mut session = Session::new(super::peer(), SessionLimits::default(), 0);
    session.receive(raw.replace("offset=0", "offset=5").as_bytes(), 0);
    session.step(&mut router, &mut backend, 0);
    session.step(&mut router, &mut backend, 4_999);
    assert!(session.pending_output().is_empty());
    session.step(&mut router, &mut backend, 5_000);
    let (answer, _) = super::parse_answer(session.pending_output()).unwrap();
    assert_eq!((answer.status, answer.body.len()), (200, 0), "the wait ends empty at its deadline");

    backend.stop("acme-web", "triple fault");
    let answer = exchange(&mut router, &mut backend, raw.replace("offset=0", "offset=5").as_bytes()).unwrap();
    assert_eq!(answer.header("Guest-State"), Some("stopped"), "a stopped guest's console does not wait");
}

#[test]
fn stats_nested_state_host_and_metrics_are_served() {
    let (mut router, mut backend) = (router(), backend());
    backend.count_exit("acme-web", "cpuid", false);
    backend.count_exit("acme-web", "cpuid", true);
    backend.count_exit("acme-web", "cpuid", true);
    backend.count_exit("globex-db", "hlt", false);
    let stats = call(&mut router, &mut backend, "GET", "/v1/guests/acme-web/stats", Some(ACME), b"").json();
    assert_eq!(stats["exits"][0]["reason"], "cpuid");
    assert_eq!((stats["exits"][0]["l1"].as_u64(), stats["exits"][0]["l2"].as_u64()), (Some(1), Some(2)));
    let nested = call(&mut router, &mut backend, "GET", "/v1/guests/acme-web/nested", Some(ACME), b"").json();
    assert_eq!(nested["vcpus"][0]["fields"][0]["name"], "guest_rip");
    let host = call(&mut router, &mut backend, "GET", "/v1/host", Some(GLOBEX), b"").json();
    assert!(host["vmx_features"].as_array().unwrap().iter().any(|f| f == "ept"));

    let tenant_metrics = call(&mut router, &mut backend, "GET", "/metrics", Some(ACME), b"");
    assert_eq!(tenant_metrics.header("Content-Type"), Some(crate::http::PROMETHEUS_TEXT));
    let text = tenant_metrics.text();
    assert!(text.contains("matryoshka_guest_exits_total{guest=\"acme-web\",reason=\"cpuid\",level=\"l2\"} 2"));
    assert!(!text.contains("globex-db") && !text.contains("infra") && !text.contains("matryoshka_host"));
    let admin_metrics = call(&mut router, &mut backend, "GET", "/metrics", Some(ADMIN), b"");
    let text = admin_metrics.text();
    assert!(text.contains("globex-db") && text.contains("matryoshka_host_memory_free_bytes 536870912"));
    assert!(text.contains("matryoshka_control_responses_total{class=\"2xx\"}"));
}

#[test]
fn unknown_endpoints_and_methods_get_404_and_405() {
    let (mut router, mut backend) = (router(), backend());
    assert_eq!(call(&mut router, &mut backend, "GET", "/v2/guests", Some(ADMIN), b"").status, 404);
    assert_eq!(call(&mut router, &mut backend, "GET", "/", Some(ADMIN), b"").status, 404);
    let wrong = call(&mut router, &mut backend, "PATCH", "/v1/guests/acme-web", Some(ADMIN), b"");
    assert_eq!((wrong.status, wrong.header("Allow")), (405, Some("GET, DELETE")));
    let bad_name = call(&mut router, &mut backend, "GET", "/v1/guests/..%2f", Some(ADMIN), b"");
    assert_eq!(bad_name.status, 404);
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::from("v1")),
        Just(String::from("guests")),
        Just(String::from("globex-db")),
        Just(String::from("infra")),
        Just(String::from("acme-web")),
        Just(String::from("metrics")),
        Just(String::from("console")),
        Just(String::from("host")),
        "[a-z%.?=&0-9-]{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever acme asks, no answer mentions another tenant's guest or changes it.
    #[test]
    fn a_tenant_never_learns_of_or_touches_other_tenants_guests(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("PATCH")],
        segments in proptest::collection::vec(path_segment(), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (mut router, mut backend) = (router(), backend());
        backend.write_console("globex-db", b"globex secret");
        let path = format!("/{}", segments.join("/"));
        let answer = call(&mut router, &mut backend, method, &path, Some(ACME), &body);
        prop_assert!(answer.status < 500, "{} {} -> {}", method, path, answer.status);
        let text = String::from_utf8_lossy(&answer.body);
        if answer.status != 404 {
            prop_assert!(!text.contains("globex") && !text.contains("infra"), "{} {} -> {}", method, path, text);
        }
        prop_assert_eq!(backend.state("globex-db"), Some(GuestState::Running));
        prop_assert_eq!(backend.state("infra"), Some(GuestState::Running));
    }
}
