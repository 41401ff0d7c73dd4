//! Captures every log line the crate writes during the tests, to prove no token reaches one.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use std::sync::{Mutex, Once};

use super::{call, router, ALL_TOKENS, GLOBEX};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        LINES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(record.args().to_string());
    }

    fn flush(&self) {}
}

pub(crate) fn install() {
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in these tests");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

#[test]
fn no_token_ever_reaches_a_log() {
    let mut router = router();
    let mut backend = super::backend();
    // Near misses of real tokens are what a careless log line would print.
    let near_miss = &GLOBEX[..GLOBEX.len() - 1];
    for token in [Some(near_miss), Some("not-a-token"), None, Some(GLOBEX)] {
        call(&mut router, &mut backend, "GET", "/v1/guests", token, b"");
        call(&mut router, &mut backend, "POST", "/v1/guests/acme-web/pause", token, b"");
    }
    for _ in 0..6 {
        call(&mut router, &mut backend, "GET", "/v1/host", Some(near_miss), b"");
    }
    let lines = LINES.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    assert!(lines.iter().any(|l| l.contains("refused")), "failures are logged: {lines:?}");
    assert!(lines.iter().any(|l| l.contains("locked out")), "lockouts are logged: {lines:?}");
    for line in lines.iter() {
        for token in ALL_TOKENS.iter().chain([&near_miss]) {
            assert!(!line.contains(token), "a log line shows a token: {line}");
        }
    }
}
