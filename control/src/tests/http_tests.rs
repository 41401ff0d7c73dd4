use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::{backend, exchange, parse_answer, peer, router, ACME};
use crate::http::{Limits, Progress, RequestReader};
use crate::session::{Session, SessionLimits};

#[test]
fn framing_errors_get_clear_statuses_and_close_the_connection() {
    let auth = format!("Authorization: Bearer {ACME}\r\n");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET noslash HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), 400),
        (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 505),
        (format!("POST /v1/guests HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes(), 501),
        (format!("POST /v1/guests HTTP/1.1\r\n{auth}Content-Length: 70000\r\n\r\n").into_bytes(), 413),
        (format!("PUT /v1/guests/a/kernel HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 65 << 20).into_bytes(), 413),
        (format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000)).into_bytes(), 431),
        (format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(40)).into_bytes(), 431),
        (b"GET / HTTP/1.1\r\nExpect: something-else\r\n\r\n".to_vec(), 417),
    ];
    for (raw, status) in cases {
        let answer = exchange(&mut router(), &mut backend(), &raw).expect("an answer");
        assert_eq!(answer.status, status, "{}", String::from_utf8_lossy(&raw[..raw.len().min(80)]));
        assert_eq!(answer.header("Connection"), Some("close"));
        assert!(answer.json()["error"].is_string());
    }
}

#[test]
fn a_head_without_its_end_is_refused_once_it_reaches_the_limit() {
    let mut reader = RequestReader::new(Limits::default());
    let mut fed = 0;
    loop {
        assert!(reader.room() > 0, "the reader takes bytes until it decides");
        reader.push(b"GET /aaaaaaaaaaaaaaaa");
        fed += 20;
        match reader.poll() {
            Ok(Progress::Incomplete) => assert!(fed <= 8 * 1024 + 20),
            Err(error) => {
                assert_eq!(error.status.0, 431);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn an_upload_the_memory_cannot_hold_gets_507_not_a_crash() {
    let limits = Limits { max_upload_bytes: usize::MAX, ..Limits::default() };
    let mut reader = RequestReader::new(limits);
    reader.push(b"PUT /v1/guests/a/kernel HTTP/1.1\r\nContent-Length: 900000000000000000\r\n\r\n");
    match reader.poll() {
        Err(error) => assert_eq!(error.status.0, 507),
        Ok(_) => panic!("an exabyte body was accepted"),
    }
}

#[test]
fn an_upload_body_arrives_whole_and_a_pipelined_request_after_it_is_kept() {
    let mut reader = RequestReader::new(Limits::default());
    reader.push(b"PUT /v1/guests/a/kernel HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    let Ok(Progress::Complete(request)) = reader.poll() else { panic!("incomplete") };
    assert_eq!(request.body, b"hello");
    reader.push(b"GET /v1/host HTTP/1.1\r\n\r\n");
    let Ok(Progress::Complete(next)) = reader.poll() else { panic!("incomplete") };
    assert_eq!((next.path.as_str(), next.body.len()), ("/v1/host", 0));
    assert!(reader.is_idle());
}

#[test]
fn keep_alive_pipelined_requests_are_answered_in_order_and_http10_closes() {
    let (mut router, mut backend) = (router(), backend());
    let one = format!("GET /v1/host HTTP/1.1\r\nAuthorization: Bearer {ACME}\r\n\r\n");
    let two = format!("GET /v1/guests/acme-web HTTP/1.1\r\nAuthorization: Bearer {ACME}\r\n\r\n");
    let mut session = Session::new(peer(), SessionLimits::default(), 0);
    let mut input = format!("{one}{two}").into_bytes();
    let mut output = Vec::new();
    for now in 0..10 {
        let take = session.room().min(input.len());
        session.receive(&input[..take], now);
        input.drain(..take);
        session.step(&mut router, &mut backend, now);
        output.extend_from_slice(session.pending_output());
        let count = session.pending_output().len();
        session.sent(count, now);
    }
    let (first, used) = parse_answer(&output).unwrap();
    let (second, _) = parse_answer(&output[used..]).unwrap();
    assert!(first.json()["vmx_features"].is_array());
    assert_eq!(second.json()["name"], "acme-web");
    assert!(!session.is_finished(), "HTTP/1.1 keeps the connection");

    let old = format!("GET /v1/host HTTP/1.0\r\nAuthorization: Bearer {ACME}\r\n\r\n");
    assert_eq!(exchange(&mut router, &mut backend, old.as_bytes()).unwrap().header("Connection"), Some("close"));
}

#[test]
fn an_upload_with_expect_continue_gets_100_first() {
    let (mut router, mut backend) = (router(), backend());
    backend.stop("acme-web", "test");
    let head = format!(
        "PUT /v1/guests/acme-web/kernel HTTP/1.1\r\nAuthorization: Bearer {ACME}\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    );
    let mut session = Session::new(peer(), SessionLimits::default(), 0);
    session.receive(head.as_bytes(), 0);
    session.step(&mut router, &mut backend, 0);
    assert_eq!(session.pending_output(), b"HTTP/1.1 100 Continue\r\n\r\n");
    let count = session.pending_output().len();
    session.sent(count, 0);
    session.receive(b"ELF!", 1);
    session.step(&mut router, &mut backend, 1);
    let (answer, _) = parse_answer(session.pending_output()).unwrap();
    assert_eq!(answer.status, 409, "a stopped guest's images are fixed: {}", answer.text());
}

#[test]
fn a_slow_client_is_timed_out_and_an_idle_one_closed() {
    let (mut router, mut backend) = (router(), backend());
    let limits = SessionLimits::default();
    let mut session = Session::new(peer(), limits, 0);
    for second in 0..30u64 {
        session.receive(b"X", second * 1000);
        session.step(&mut router, &mut backend, second * 1000);
        assert!(session.pending_output().is_empty());
    }
    session.step(&mut router, &mut backend, limits.request_timeout_ms);
    let (answer, _) = parse_answer(session.pending_output()).unwrap();
    assert_eq!(answer.status, 408);
    assert_eq!(session.room(), 0, "nothing more is read from a timed-out client");

    let mut idle = Session::new(peer(), limits, 0);
    idle.step(&mut router, &mut backend, limits.idle_timeout_ms - 1);
    assert!(!idle.is_finished());
    idle.step(&mut router, &mut backend, limits.idle_timeout_ms);
    assert!(idle.is_finished());
    assert!(idle.pending_output().is_empty(), "an idle connection is closed without a word");

    let mut deaf = Session::new(peer(), limits, 0);
    deaf.receive(format!("GET /v1/host HTTP/1.1\r\nAuthorization: Bearer {ACME}\r\n\r\n").as_bytes(), 0);
    deaf.step(&mut router, &mut backend, 0);
    assert!(!deaf.is_stalled(limits.write_timeout_ms - 1));
    assert!(deaf.is_stalled(limits.write_timeout_ms), "a client that never reads is dropped");
}

#[test]
fn a_request_cut_short_by_the_peer_closes_the_session() {
    let (mut router, mut backend) = (router(), backend());
    let mut session = Session::new(peer(), SessionLimits::default(), 0);
    session.receive(b"GET /v1/ho", 0);
    session.step(&mut router, &mut backend, 0);
    session.peer_finished_sending();
    assert!(session.is_finished());
}

fn valid_request() -> impl Strategy<Value = Vec<u8>> {
    let path = prop_oneof![
        Just("/v1/guests"),
        Just("/v1/guests/acme-web"),
        Just("/v1/guests/acme-web/console?offset=3"),
        Just("/v1/host"),
        Just("/metrics"),
    ];
    (path, proptest::collection::vec(any::<u8>(), 0..40)).prop_map(|(path, body)| {
        let mut raw =
            format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {ACME}\r\nContent-Length: {}\r\n\r\n", body.len())
                .into_bytes();
        raw.extend_from_slice(&body);
        raw
    })
}

/// Drives a session over `input` split at `cuts`, and returns all it wrote.
fn run_in_pieces(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let (mut router, mut backend) = (router(), backend());
    backend.write_console("acme-web", b"console text");
    let mut session = Session::new(peer(), SessionLimits::default(), 0);
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut last = 0;
    for &cut in cuts.iter().filter(|&&c| c <= input.len()) {
        if cut >= last {
            pieces.push(&input[last..cut]);
            last = cut;
        }
    }
    pieces.push(&input[last..]);
    let mut output = Vec::new();
    let mut now = 0;
    for mut piece in pieces {
        loop {
            let take = session.room().min(piece.len());
            session.receive(&piece[..take], now);
            piece = &piece[take..];
            session.step(&mut router, &mut backend, now);
            output.extend_from_slice(session.pending_output());
            let count = session.pending_output().len();
            session.sent(count, now);
            now += 1;
            if piece.is_empty() || session.is_finished() || now > 10_000 {
                break;
            }
        }
    }
    for _ in 0..4 {
        session.step(&mut router, &mut backend, now);
        output.extend_from_slice(session.pending_output());
        let count = session.pending_output().len();
        session.sent(count, now);
    }
    output
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Any bytes, in any pieces: no panic, and whatever comes back is whole HTTP responses.
    #[test]
    fn arbitrary_bytes_never_panic_and_get_well_formed_answers(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(0usize..600, 0..8),
    ) {
        let output = run_in_pieces(&input, &cuts);
        let mut rest = &output[..];
        while !rest.is_empty() {
            let (answer, used) = parse_answer(rest).expect("whole responses only");
            prop_assert!((100..600).contains(&answer.status));
            rest = &rest[used..];
        }
    }

    /// Mutations of a valid request: every answer is a response, never a crash.
    #[test]
    fn mutated_requests_never_panic(
        request in valid_request(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    ) {
        let mut input = request;
        for (at, byte) in flips {
            let len = input.len();
            input[at % len] = byte;
        }
        let output = run_in_pieces(&input, &[]);
        if !output.is_empty() {
            prop_assert!(parse_answer(&output).is_some());
        }
    }

    /// TCP may cut a request anywhere; the answer must not depend on where.
    #[test]
    fn the_answer_does_not_depend_on_how_the_request_is_split(
        request in valid_request(),
        cuts in proptest::collection::vec(0usize..200, 0..8),
    ) {
        let mut sorted = cuts.clone();
        sorted.sort_unstable();
        prop_assert_eq!(run_in_pieces(&request, &sorted), run_in_pieces(&request, &[]));
    }
}
