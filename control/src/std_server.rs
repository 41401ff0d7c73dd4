//! The same sessions and router served over `std::net`, so host tools (netctl) can be tested
//! end to end against a real socket. Not used by the shim.

extern crate std;

use alloc::vec::Vec;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::api::{ApiPolicy, GuestBackend, Router};
use crate::auth::{Authenticator, RateLimitPolicy, TokenTable};
use crate::session::{Session, SessionLimits};

pub struct StdServer {
    listener: TcpListener,
    connections: Vec<(TcpStream, Session)>,
    router: Router,
    limits: SessionLimits,
    max_connections: usize,
    started: Instant,
}

impl StdServer {
    pub fn bind(address: &str, tokens: TokenTable, rate_limit: RateLimitPolicy) -> std::io::Result<StdServer> {
        let listener = TcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        Ok(StdServer {
            listener,
            connections: Vec::new(),
            router: Router::new(Authenticator::new(tokens, rate_limit), ApiPolicy::default()),
            limits: SessionLimits::default(),
            max_connections: 16,
            started: Instant::now(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// Serves until `stop` is set, polling every millisecond.
    pub fn run<B: GuestBackend + ?Sized>(&mut self, backend: &mut B, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll(backend);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn poll<B: GuestBackend + ?Sized>(&mut self, backend: &mut B) {
        let now_ms = self.started.elapsed().as_millis() as u64;
        while self.connections.len() < self.max_connections {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.connections.push((stream, Session::new(peer.ip(), self.limits, now_ms)));
                    }
                }
                Err(_) => break,
            }
        }
        let router = &mut self.router;
        self.connections.retain_mut(|(stream, session)| serve(stream, session, router, backend, now_ms));
    }
}

/// One bounded step for one connection; false once it is over.
fn serve<B: GuestBackend + ?Sized>(
    stream: &mut TcpStream,
    session: &mut Session,
    router: &mut Router,
    backend: &mut B,
    now_ms: u64,
) -> bool {
    let mut buffer = [0u8; 16 * 1024];
    let room = session.room().min(buffer.len());
    if room > 0 {
        match stream.read(&mut buffer[..room]) {
            Ok(0) => session.peer_finished_sending(),
            Ok(count) => session.receive(&buffer[..count], now_ms),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    session.step(router, backend, now_ms);
    if !session.pending_output().is_empty() {
        match stream.write(session.pending_output()) {
            Ok(count) => session.sent(count, now_ms),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    if session.is_stalled(now_ms) {
        return false;
    }
    if session.is_finished() {
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        return false;
    }
    true
}
