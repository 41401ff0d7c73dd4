//! One client connection, independent of the transport: bytes in, bytes out, a clock passed in.
//!
//! A session answers one request at a time and takes no further input while an answer is
//! pending, so its memory is bounded by one request plus one response. Every state has a
//! deadline, so a client that trickles bytes, stops reading, or just sits there is dropped
//! without holding the server: the slow-loris defence.

use alloc::vec::Vec;
use core::net::IpAddr;

use crate::api::{GuestBackend, Reply, Router};
use crate::http::{self, Limits, Progress, Request, RequestReader, Response, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub http: Limits,
    /// From a request's first byte to its last.
    pub request_timeout_ms: u64,
    /// Between requests on a kept-alive connection.
    pub idle_timeout_ms: u64,
    /// Without any of a pending answer being taken by the client.
    pub write_timeout_ms: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            http: Limits::default(),
            request_timeout_ms: 30_000,
            idle_timeout_ms: 15_000,
            write_timeout_ms: 30_000,
        }
    }
}

enum Phase {
    Reading,
    /// A console read waiting for output, re-asked every step until its deadline.
    Parked {
        request: Request,
        deadline_ms: u64,
    },
}

pub struct Session {
    peer: IpAddr,
    limits: SessionLimits,
    reader: RequestReader,
    phase: Phase,
    output: Vec<u8>,
    output_sent: usize,
    /// Close once the output is sent.
    closing: bool,
    request_started_ms: Option<u64>,
    last_progress_ms: u64,
}

impl Session {
    pub fn new(peer: IpAddr, limits: SessionLimits, now_ms: u64) -> Session {
        Session {
            peer,
            limits,
            reader: RequestReader::new(limits.http),
            phase: Phase::Reading,
            output: Vec::new(),
            output_sent: 0,
            closing: false,
            request_started_ms: None,
            last_progress_ms: now_ms,
        }
    }

    /// A session that only sends `response` and closes: for a connection refused at once.
    pub fn refusing(peer: IpAddr, limits: SessionLimits, response: Response, now_ms: u64) -> Session {
        let mut session = Session::new(peer, limits, now_ms);
        session.queue(response.closing());
        session
    }

    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// How many received bytes the session takes now.
    pub fn room(&self) -> usize {
        if self.closing || !self.output.is_empty() || matches!(self.phase, Phase::Parked { .. }) {
            0
        } else {
            self.reader.room()
        }
    }

    pub fn receive(&mut self, data: &[u8], now_ms: u64) {
        if data.is_empty() {
            return;
        }
        if self.reader.is_idle() {
            self.request_started_ms = Some(now_ms);
        }
        self.reader.push(data);
        self.last_progress_ms = now_ms;
    }

    /// Advances by at most one request.
    pub fn step<B: GuestBackend + ?Sized>(&mut self, router: &mut Router, backend: &mut B, now_ms: u64) {
        if self.closing || !self.output.is_empty() {
            return;
        }
        if let Phase::Parked { request, deadline_ms } = &self.phase {
            if let Reply::Now(response) = router.handle(backend, self.peer, request, now_ms, Some(*deadline_ms)) {
                let keep_alive = request.keep_alive;
                self.phase = Phase::Reading;
                self.answer(response, keep_alive, now_ms);
            }
            return;
        }
        match self.reader.poll() {
            Err(error) => {
                log::debug!("control: {}: {}", self.peer, error.reason);
                router.counters.count_response(error.status);
                self.queue(error.to_response());
            }
            Ok(Progress::SendContinue) => self.output.extend_from_slice(http::CONTINUE),
            Ok(Progress::Complete(request)) => {
                self.request_started_ms = None;
                match router.handle(backend, self.peer, &request, now_ms, None) {
                    Reply::Now(response) => self.answer(response, request.keep_alive, now_ms),
                    Reply::Later { deadline_ms } => self.phase = Phase::Parked { request, deadline_ms },
                }
            }
            Ok(Progress::Incomplete) => {
                let request_overdue = self
                    .request_started_ms
                    .is_some_and(|started| now_ms.saturating_sub(started) >= self.limits.request_timeout_ms);
                if request_overdue {
                    router.counters.connections_timed_out += 1;
                    router.counters.count_response(Status::REQUEST_TIMEOUT);
                    log::debug!("control: {}: request not received in time", self.peer);
                    self.queue(Response::error(Status::REQUEST_TIMEOUT, "request not received in time").closing());
                } else if self.reader.is_idle()
                    && now_ms.saturating_sub(self.last_progress_ms) >= self.limits.idle_timeout_ms
                {
                    self.closing = true;
                }
            }
        }
    }

    fn answer(&mut self, response: Response, keep_alive: bool, now_ms: u64) {
        self.last_progress_ms = now_ms;
        self.queue(if keep_alive { response } else { response.closing() });
    }

    fn queue(&mut self, response: Response) {
        self.closing |= response.close;
        self.output = response.encode();
        self.output_sent = 0;
    }

    pub fn pending_output(&self) -> &[u8] {
        &self.output[self.output_sent..]
    }

    pub fn sent(&mut self, count: usize, now_ms: u64) {
        if count == 0 {
            return;
        }
        self.output_sent += count.min(self.output.len() - self.output_sent);
        self.last_progress_ms = now_ms;
        if self.output_sent == self.output.len() {
            self.output.clear();
            self.output_sent = 0;
        }
    }

    /// The peer will send nothing more (it half-closed): whatever is not a complete request now never will be.
    pub fn peer_finished_sending(&mut self) {
        if !matches!(self.phase, Phase::Parked { .. }) && self.output.is_empty() {
            self.closing = true;
        }
    }

    /// Everything is sent and the connection should be closed gracefully.
    pub fn is_finished(&self) -> bool {
        self.closing && self.output.is_empty()
    }

    /// The client stopped taking the answer: drop the connection without waiting any longer.
    pub fn is_stalled(&self, now_ms: u64) -> bool {
        !self.output.is_empty() && now_ms.saturating_sub(self.last_progress_ms) >= self.limits.write_timeout_ms
    }

    /// When this session next needs a step even if no packet arrives.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if let Phase::Parked { deadline_ms, .. } = self.phase {
            return Some(deadline_ms);
        }
        if !self.output.is_empty() {
            return Some(self.last_progress_ms + self.limits.write_timeout_ms);
        }
        match self.request_started_ms {
            Some(started) => Some(started + self.limits.request_timeout_ms),
            None => Some(self.last_progress_ms + self.limits.idle_timeout_ms),
        }
    }

    pub fn is_parked(&self) -> bool {
        matches!(self.phase, Phase::Parked { .. })
    }
}
