//! A small blocking HTTP/1.1 client: one connection per request, `Connection: close`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::thread;
use std::time::Duration;

/// Larger answers are refused: no legitimate one (the console is sent in 64 KiB slices) comes near.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The server's `{"error": ...}` text, or the body itself if it is not that, made safe to print.
    pub fn error_text(&self) -> String {
        let text = match serde_json::from_slice::<matryoshka_control::model::ErrorBody>(&self.body) {
            Ok(error) => error.error,
            Err(_) => String::from_utf8_lossy(&self.body[..self.body.len().min(200)]).into_owned(),
        };
        text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Malformed(&'static str),
    TooLarge,
}

/// Reads one response from the front of `bytes`: `Ok(None)` until it is complete. With
/// `at_eof`, a response without Content-Length ends where the bytes end.
pub fn parse_response(bytes: &[u8], at_eof: bool) -> Result<Option<HttpResponse>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if at_eof => return Err(ParseError::Malformed("connection closed mid-answer")),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ParseError::Malformed("not an HTTP/1.x response")),
    };
    let status = response.code.ok_or(ParseError::Malformed("no status code"))?;
    let reason = response.reason.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).trim().to_string()))
        .collect();
    let content_length = match headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        Some((_, value)) => Some(value.parse::<usize>().map_err(|_| ParseError::Malformed("invalid Content-Length"))?),
        None => None,
    };
    let body_end = match content_length {
        Some(length) if length > MAX_RESPONSE_BYTES => return Err(ParseError::TooLarge),
        Some(length) => head_len.checked_add(length).ok_or(ParseError::TooLarge)?,
        None if status == 204 || status == 304 || (100..200).contains(&status) => head_len,
        None if at_eof => bytes.len(),
        None => return Ok(None),
    };
    if bytes.len() < body_end {
        return if at_eof { Err(ParseError::Malformed("connection closed mid-answer")) } else { Ok(None) };
    }
    Ok(Some(HttpResponse { status, reason, headers, body: bytes[head_len..body_end].to_vec() }))
}

#[derive(Debug)]
pub enum ClientError {
    /// Could not connect, after the retries.
    Connect { attempts: u32, error: std::io::Error },
    /// Connected, but the exchange failed (reset, timeout, garbage).
    Exchange(String),
}

#[derive(Clone)]
pub struct Client {
    pub host: String,
    token: Option<String>,
    /// Further attempts after a refused connection, waiting 100 ms, 200 ms, 400 ms, ...
    pub retries: u32,
    pub read_timeout: Duration,
}

impl Client {
    pub fn new(host: String, token: Option<String>, retries: u32) -> Client {
        Client { host, token, retries, read_timeout: Duration::from_secs(30) }
    }

    pub fn get(&self, path: &str) -> Result<HttpResponse, ClientError> {
        self.request("GET", path, None)
    }

    pub fn post_json(&self, path: &str, body: &[u8]) -> Result<HttpResponse, ClientError> {
        self.request("POST", path, Some(("application/json", body)))
    }

    pub fn request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<HttpResponse, ClientError> {
        let mut stream = self.connect()?;
        let exchange_error = |what: &str, error: std::io::Error| ClientError::Exchange(format!("{what}: {error}"));
        stream.set_read_timeout(Some(self.read_timeout)).map_err(|e| exchange_error("socket", e))?;
        stream.set_write_timeout(Some(self.read_timeout)).map_err(|e| exchange_error("socket", e))?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.host);
        if let Some(token) = &self.token {
            head += &format!("Authorization: Bearer {token}\r\n");
        }
        let (content_type, payload) = body.unwrap_or(("application/octet-stream", &[]));
        if body.is_some() || method != "GET" {
            head += &format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", payload.len());
        }
        // A large upload asks first, so that a refusal (413, 401, 404...) comes
        // before megabytes are sent into a connection the server closes.
        let ask_first = payload.len() > EXPECT_CONTINUE_ABOVE;
        if ask_first {
            head += "Expect: 100-continue\r\n";
        }
        head += "\r\n";
        stream.write_all(head.as_bytes()).map_err(|e| exchange_error("sending the request", e))?;
        let mut received = Vec::new();
        let send_body = !ask_first || await_continue(&mut stream, &mut received, self.read_timeout)?;
        if send_body {
            stream.write_all(payload).map_err(|e| exchange_error("sending the request", e))?;
        }

        let mut buffer = [0u8; 64 * 1024];
        loop {
            let count = match stream.read(&mut buffer) {
                Ok(count) => count,
                // A server that answers and closes before reading an oversized upload resets the
                // connection; its answer may still have arrived.
                Err(error) if error.kind() == ErrorKind::ConnectionReset && !received.is_empty() => 0,
                Err(error) => return Err(exchange_error("reading the answer", error)),
            };
            received.extend_from_slice(&buffer[..count]);
            match parse_response(&received, count == 0) {
                Ok(Some(response)) => return Ok(response),
                Ok(None) if count == 0 => {
                    return Err(ClientError::Exchange("connection closed without an answer".into()))
                }
                Ok(None) => {}
                Err(ParseError::Malformed(why)) => return Err(ClientError::Exchange(format!("bad answer: {why}"))),
                Err(ParseError::TooLarge) => return Err(ClientError::Exchange("answer too large".into())),
            }
            if received.len() > MAX_RESPONSE_BYTES + 64 * 1024 {
                return Err(ClientError::Exchange("answer too large".into()));
            }
        }
    }

    fn connect(&self) -> Result<TcpStream, ClientError> {
        let mut attempts = 0;
        let mut delay = Duration::from_millis(100);
        loop {
            attempts += 1;
            match self.connect_once() {
                Ok(stream) => return Ok(stream),
                Err(error) if refused(&error) && attempts <= self.retries => {
                    thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Err(ClientError::Connect { attempts, error }),
            }
        }
    }

    fn connect_once(&self) -> std::io::Result<TcpStream> {
        let mut last_error = std::io::Error::new(ErrorKind::InvalidInput, "the host name has no address");
        for address in self.host.to_socket_addrs()? {
            match TcpStream::connect_timeout(&address, Duration::from_secs(5)) {
                Ok(stream) => return Ok(stream),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}

/// Request bodies larger than this are sent after the server's `100 Continue`.
const EXPECT_CONTINUE_ABOVE: usize = 64 * 1024;
/// How long to wait for `100 Continue` before sending the body anyway (RFC 9110 10.1.1).
const CONTINUE_WAIT: Duration = Duration::from_secs(3);

/// After a head with `Expect: 100-continue`: whether to send the body. `received` keeps
/// what came that is not the interim answer (the final answer, when the server refused).
fn await_continue(stream: &mut TcpStream, received: &mut Vec<u8>, read_timeout: Duration) -> Result<bool, ClientError> {
    let error = |e: std::io::Error| ClientError::Exchange(format!("waiting for 100 Continue: {e}"));
    stream.set_read_timeout(Some(CONTINUE_WAIT)).map_err(error)?;
    let mut buffer = [0u8; 4096];
    let send = loop {
        let count = match stream.read(&mut buffer) {
            Ok(count) => count,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break true,
            Err(e) => return Err(error(e)),
        };
        if count == 0 {
            break false;
        }
        received.extend_from_slice(&buffer[..count]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let interim = received.starts_with(b"HTTP/1.1 100") || received.starts_with(b"HTTP/1.0 100");
            if interim {
                received.drain(..end + 4);
            }
            break interim;
        }
    };
    stream.set_read_timeout(Some(read_timeout)).map_err(error)?;
    Ok(send)
}

/// The server is not (yet) listening, or its listeners are all busy: worth another try.
fn refused(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_complete_response_is_parsed_and_a_partial_one_waits() {
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 27\r\n\r\n{\"error\":\"no guest named\"}\n";
        let response = parse_response(raw, false).unwrap().unwrap();
        assert_eq!((response.status, response.reason.as_str()), (404, "Not Found"));
        assert_eq!(response.error_text(), "no guest named");
        for cut in 0..raw.len() {
            assert_eq!(parse_response(&raw[..cut], false), Ok(None), "cut at {cut}");
            assert!(parse_response(&raw[..cut], true).is_err(), "cut at {cut} at EOF");
        }
    }

    #[test]
    fn a_response_without_length_ends_at_eof() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(parse_response(raw, false), Ok(None));
        assert_eq!(parse_response(raw, true).unwrap().unwrap().body, b"hello");
    }

    #[test]
    fn garbage_and_absurd_lengths_are_errors() {
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", true).is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false).is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", usize::MAX);
        assert_eq!(parse_response(huge.as_bytes(), false), Err(ParseError::TooLarge));
    }

    #[test]
    fn error_text_is_safe_to_print() {
        let response =
            HttpResponse { status: 500, reason: "x".into(), headers: vec![], body: b"\x1b[2Jboom\n".to_vec() };
        assert_eq!(response.error_text(), " [2Jboom");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), eof: bool) {
            if let Ok(Some(response)) = parse_response(&bytes, eof) {
                prop_assert!(response.body.len() <= bytes.len());
                let _ = response.error_text();
            }
        }

        #[test]
        fn well_formed_responses_parse_back_whole(
            status in 100u16..600,
            body in proptest::collection::vec(any::<u8>(), 0..300),
            extra in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,20}"), 0..5),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut raw = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\n", body.len());
            for (name, value) in &extra {
                if !name.eq_ignore_ascii_case("content-length") {
                    raw += &format!("{name}: {value}\r\n");
                }
            }
            raw += "\r\n";
            let mut raw = raw.into_bytes();
            raw.extend_from_slice(&body);
            let response = parse_response(&raw, false).unwrap().unwrap();
            prop_assert_eq!(response.status, status);
            prop_assert_eq!(&response.body, &body);
            let cut = cut.index(raw.len());
            prop_assert_eq!(parse_response(&raw[..cut], false), Ok(None));
        }

        #[test]
        fn mutated_responses_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..100),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nGuest-State: running\r\n\r\n", body.len()).into_bytes();
            raw.extend_from_slice(&body);
            for (at, byte) in flips {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            let _ = parse_response(&raw, true);
            let _ = parse_response(&raw, false);
        }
    }
}
