//! HTTP/1.1 framing: an incremental request reader with hard limits, and a response writer.
//!
//! The reader never holds more than one request: before the head is complete it takes at most
//! `max_head_bytes`, and after that exactly the body the head announced. Pipelined bytes beyond
//! that stay in the TCP socket, so a client cannot make the server buffer more than one request.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use serde::Serialize;

use crate::auth::Secret;

/// httparse needs a fixed array; a real client sends a handful of headers.
const MAX_HEADERS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const OK: Status = Status(200);
    pub const CREATED: Status = Status(201);
    pub const ACCEPTED: Status = Status(202);
    pub const NO_CONTENT: Status = Status(204);
    pub const BAD_REQUEST: Status = Status(400);
    pub const UNAUTHORIZED: Status = Status(401);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const CONFLICT: Status = Status(409);
    pub const LENGTH_REQUIRED: Status = Status(411);
    pub const PAYLOAD_TOO_LARGE: Status = Status(413);
    pub const UNSUPPORTED_MEDIA_TYPE: Status = Status(415);
    pub const EXPECTATION_FAILED: Status = Status(417);
    pub const UNPROCESSABLE: Status = Status(422);
    pub const TOO_MANY_REQUESTS: Status = Status(429);
    pub const HEADERS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const SERVICE_UNAVAILABLE: Status = Status(503);
    pub const INSUFFICIENT_STORAGE: Status = Status(507);
    pub const VERSION_NOT_SUPPORTED: Status = Status(505);

    pub fn reason(self) -> &'static str {
        match self.0 {
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            411 => "Length Required",
            413 => "Content Too Large",
            415 => "Unsupported Media Type",
            417 => "Expectation Failed",
            422 => "Unprocessable Content",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            507 => "Insufficient Storage",
            505 => "HTTP Version Not Supported",
            _ => "Unknown",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    /// Any other token: answered 405 on a known path, 404 elsewhere.
    Other,
}

impl Method {
    fn parse(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other => "OTHER",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers.
    pub max_head_bytes: usize,
    /// Bodies of everything but image uploads (JSON documents, small).
    pub max_body_bytes: usize,
    /// Bodies of `PUT` requests, which carry kernels and initrds.
    pub max_upload_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_head_bytes: 8 * 1024, max_body_bytes: 64 * 1024, max_upload_bytes: 64 * 1024 * 1024 }
    }
}

pub struct Request {
    pub method: Method,
    pub path: String,
    /// The part after `?`, without it; empty when absent.
    pub query: String,
    pub authorization: Option<Secret>,
    pub content_type: Option<String>,
    pub content_length: Option<usize>,
    pub keep_alive: bool,
    pub body: Vec<u8>,
}

impl fmt::Debug for Request {
    // Spelled out so that the Authorization header can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("content_length", &self.content_length)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Request {
    /// The value of `key` in the query string; no percent-decoding, as every parameter is a number.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// A framing error: the connection's byte stream can no longer be trusted, so it is answered and closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: Status,
    pub reason: &'static str,
}

impl HttpError {
    const fn new(status: Status, reason: &'static str) -> Self {
        HttpError { status, reason }
    }

    pub fn to_response(&self) -> Response {
        Response::error(self.status, self.reason).closing()
    }
}

#[derive(Debug)]
pub enum Progress {
    Incomplete,
    /// The client sent `Expect: 100-continue` (curl does for large uploads) and waits for this.
    SendContinue,
    Complete(Request),
}

struct Head {
    len: usize,
    method: Method,
    path: String,
    query: String,
    authorization: Option<Secret>,
    content_type: Option<String>,
    content_length: Option<usize>,
    keep_alive: bool,
    expects_continue: bool,
}

pub struct RequestReader {
    limits: Limits,
    buf: Vec<u8>,
    /// How far `buf` has been searched for the end of the head, so that a client trickling bytes
    /// costs linear, not quadratic, work.
    scanned: usize,
    head: Option<Head>,
    continue_sent: bool,
}

impl RequestReader {
    pub fn new(limits: Limits) -> Self {
        RequestReader { limits, buf: Vec::new(), scanned: 0, head: None, continue_sent: false }
    }

    /// How many more bytes the reader takes now.
    pub fn room(&self) -> usize {
        match &self.head {
            None => self.limits.max_head_bytes.saturating_sub(self.buf.len()),
            Some(head) => (head.len + head.content_length.unwrap_or(0)).saturating_sub(self.buf.len()),
        }
    }

    /// Appends received bytes; more than `room()` is the caller's bug and is cut off.
    pub fn push(&mut self, data: &[u8]) {
        let take = data.len().min(self.room());
        self.buf.extend_from_slice(&data[..take]);
    }

    /// True between requests: nothing of a next request has arrived.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.head.is_none()
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn poll(&mut self) -> Result<Progress, HttpError> {
        if self.head.is_none() {
            if !self.head_terminator_seen() {
                return if self.buf.len() >= self.limits.max_head_bytes {
                    Err(HttpError::new(Status::HEADERS_TOO_LARGE, "request head too large"))
                } else {
                    Ok(Progress::Incomplete)
                };
            }
            match self.parse_head()? {
                Some(head) => {
                    // The whole request is held at once: reserve it exactly
                    // now (an upload must not double the buffer as it grows),
                    // and answer when memory is short instead of failing
                    // the allocation later.
                    let total = head.len.saturating_add(head.content_length.unwrap_or(0));
                    if self.buf.try_reserve_exact(total.saturating_sub(self.buf.len())).is_err() {
                        return Err(HttpError::new(
                            Status::INSUFFICIENT_STORAGE,
                            "the server has no memory for a request body this large now",
                        ));
                    }
                    self.head = Some(head)
                }
                None => return Ok(Progress::Incomplete),
            }
        }
        let head = self.head.as_ref().expect("head parsed above");
        let total = head.len + head.content_length.unwrap_or(0);
        if self.buf.len() < total {
            if head.expects_continue && !self.continue_sent {
                self.continue_sent = true;
                return Ok(Progress::SendContinue);
            }
            return Ok(Progress::Incomplete);
        }
        let head = self.head.take().expect("head parsed above");
        // The body stays where it is, in the buffer (no copy of an upload):
        // what follows it (a pipelined request) moves to a new buffer.
        let rest = self.buf.split_off(total);
        let mut body = core::mem::replace(&mut self.buf, rest);
        body.drain(..head.len);
        self.scanned = 0;
        self.continue_sent = false;
        Ok(Progress::Complete(Request {
            method: head.method,
            path: head.path,
            query: head.query,
            authorization: head.authorization,
            content_type: head.content_type,
            content_length: head.content_length,
            keep_alive: head.keep_alive,
            body,
        }))
    }

    fn head_terminator_seen(&mut self) -> bool {
        // A head ends with an empty line; "\n\n" also covers "\r\n\r\n" minus the CR, which
        // httparse accepts too, so searching for both "\n\n" and "\n\r\n" finds every end.
        let start = self.scanned.saturating_sub(2);
        let found =
            self.buf[start..].windows(2).any(|w| w == b"\n\n") || self.buf[start..].windows(3).any(|w| w == b"\n\r\n");
        self.scanned = self.buf.len();
        found
    }

    fn parse_head(&mut self) -> Result<Option<Head>, HttpError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let len = match parsed.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            // The empty line seen was not the end of a head (e.g. blank lines before the request line).
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::new(Status::HEADERS_TOO_LARGE, "too many header fields"))
            }
            Err(httparse::Error::Version) => {
                return Err(HttpError::new(Status::VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1 are served"))
            }
            Err(_) => return Err(HttpError::new(Status::BAD_REQUEST, "malformed request head")),
        };
        let version = parsed.version.unwrap_or(1);
        let target = parsed.path.unwrap_or("");
        if !target.starts_with('/') {
            return Err(HttpError::new(Status::BAD_REQUEST, "request target must be an absolute path"));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let method = Method::parse(parsed.method.unwrap_or(""));

        let mut head = Head {
            len,
            method,
            path: path.to_string(),
            query: query.to_string(),
            authorization: None,
            content_type: None,
            content_length: None,
            keep_alive: version == 1,
            expects_continue: false,
        };
        for header in parsed.headers.iter() {
            let value = header.value;
            if header.name.eq_ignore_ascii_case("content-length") {
                let length = parse_content_length(value)?;
                if head.content_length.is_some_and(|seen| seen != length) {
                    return Err(HttpError::new(Status::BAD_REQUEST, "conflicting Content-Length headers"));
                }
                head.content_length = Some(length);
            } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(HttpError::new(
                    Status::NOT_IMPLEMENTED,
                    "Transfer-Encoding is not supported; send the body with a Content-Length",
                ));
            } else if header.name.eq_ignore_ascii_case("connection") {
                for token in value.split(|&b| b == b',').map(trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        head.keep_alive = true;
                    }
                }
            } else if header.name.eq_ignore_ascii_case("expect") {
                if !trim_ascii(value).eq_ignore_ascii_case(b"100-continue") {
                    return Err(HttpError::new(
                        Status::EXPECTATION_FAILED,
                        "only 'Expect: 100-continue' is understood",
                    ));
                }
                head.expects_continue = true;
            } else if header.name.eq_ignore_ascii_case("authorization") {
                head.authorization = Some(Secret::new(trim_ascii(value).to_vec()));
            } else if header.name.eq_ignore_ascii_case("content-type") {
                head.content_type = core::str::from_utf8(value).ok().map(|v| v.trim().to_string());
            }
        }
        let limit = if method == Method::Put { self.limits.max_upload_bytes } else { self.limits.max_body_bytes };
        if head.content_length.unwrap_or(0) > limit {
            return Err(HttpError::new(Status::PAYLOAD_TOO_LARGE, "request body exceeds the server's limit"));
        }
        Ok(Some(head))
    }
}

fn parse_content_length(value: &[u8]) -> Result<usize, HttpError> {
    let bad = HttpError::new(Status::BAD_REQUEST, "invalid Content-Length");
    let digits = trim_ascii(value);
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    Ok(digits.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection once sent.
    pub close: bool,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

pub const JSON: &str = "application/json";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OCTET_STREAM: &str = "application/octet-stream";

impl Response {
    pub fn json<T: Serialize + ?Sized>(status: Status, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Response::bytes(status, JSON, body)
            }
            Err(_) => Response::error(Status::INTERNAL_ERROR, "response could not be encoded"),
        }
    }

    /// Errors carry a JSON body `{"error": REASON}` that netctl shows next to the status.
    pub fn error(status: Status, reason: &str) -> Response {
        let mut body = serde_json::to_vec(&ErrorBody { error: reason }).unwrap_or_default();
        body.push(b'\n');
        Response::bytes(status, JSON, body)
    }

    pub fn bytes(status: Status, content_type: &'static str, body: Vec<u8>) -> Response {
        Response { status, content_type, headers: Vec::new(), body, close: false }
    }

    pub fn empty(status: Status) -> Response {
        Response::bytes(status, JSON, Vec::new())
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status.0, self.status.reason());
        if self.status != Status::NO_CONTENT {
            head += &format!("Content-Type: {}\r\nContent-Length: {}\r\n", self.content_type, self.body.len());
        }
        head += "Cache-Control: no-store\r\n";
        for (name, value) in &self.headers {
            head += &format!("{name}: {value}\r\n");
        }
        if self.close {
            head += "Connection: close\r\n";
        }
        head += "\r\n";
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
