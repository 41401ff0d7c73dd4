//! The control server on smoltcp: a fixed set of TCP sockets on one port over any
//! `smoltcp::phy::Device`, driven by [`ControlServer::poll`] in bounded steps.
//!
//! Each listening socket holds at most one connection, so the number of sockets is the
//! connection limit; a SYN beyond it finds no listener and is reset by smoltcp.

use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;

use smoltcp::iface::{Config, Interface, PollIngressSingleResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

use crate::api::{ApiPolicy, ControlCounters, GuestBackend, Router};
use crate::auth::{Authenticator, RateLimitPolicy, TokenTable};
use crate::http::{Response, Status};
use crate::session::{Session, SessionLimits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub port: u16,
    pub max_connections: usize,
    /// Beyond this, a peer's new connection is answered 429 and closed, so one client cannot
    /// take every slot.
    pub max_connections_per_peer: usize,
    pub socket_rx_bytes: usize,
    pub socket_tx_bytes: usize,
    /// Received packets processed by one `poll`; the rest wait in the device for the next one.
    pub max_packets_per_poll: usize,
    /// How long a connection we closed may wait for the peer's FIN before it is reset: a
    /// client that never closes its side would otherwise hold the socket for good.
    pub close_linger_ms: u64,
    pub session: SessionLimits,
    pub api: ApiPolicy,
    pub rate_limit: RateLimitPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: 7000,
            max_connections: 8,
            max_connections_per_peer: 4,
            socket_rx_bytes: 16 * 1024,
            socket_tx_bytes: 16 * 1024,
            max_packets_per_poll: 32,
            close_linger_ms: 5_000,
            session: SessionLimits::default(),
            api: ApiPolicy::default(),
            rate_limit: RateLimitPolicy::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addressing {
    Static { address: Ipv4Cidr, gateway: Option<Ipv4Address> },
    Dhcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkSetup {
    pub mac: [u8; 6],
    pub addressing: Addressing,
    /// Seeds TCP initial sequence numbers; take it from RDRAND or the TSC.
    pub random_seed: u64,
}

/// What the caller learns from one `poll`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollStatus {
    /// The packet budget ran out with packets left: poll again soon.
    pub more_work: bool,
    /// Poll again at the latest at this time (milliseconds, same clock as `now_ms`).
    pub next_poll_ms: Option<u64>,
}

struct Slot {
    handle: SocketHandle,
    session: Option<Session>,
    /// When the server closed this slot's last connection, while the peer has not yet.
    closed_at_ms: Option<u64>,
}

pub struct ControlServer {
    config: ServerConfig,
    iface: Interface,
    sockets: SocketSet<'static>,
    slots: Vec<Slot>,
    dhcp: Option<SocketHandle>,
    router: Router,
}

impl ControlServer {
    pub fn new<D: Device + ?Sized>(
        config: ServerConfig,
        network: NetworkSetup,
        device: &mut D,
        tokens: TokenTable,
        now_ms: u64,
    ) -> ControlServer {
        let mut iface_config = Config::new(HardwareAddress::Ethernet(EthernetAddress(network.mac)));
        iface_config.random_seed = network.random_seed;
        let mut iface = Interface::new(iface_config, device, instant(now_ms));
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = match network.addressing {
            Addressing::Static { address, gateway } => {
                iface.update_ip_addrs(|addrs| {
                    let _ = addrs.push(IpCidr::Ipv4(address));
                });
                if let Some(gateway) = gateway {
                    let _ = iface.routes_mut().add_default_ipv4_route(gateway);
                }
                None
            }
            Addressing::Dhcp => Some(sockets.add(dhcpv4::Socket::new())),
        };
        let slots = (0..config.max_connections.max(1))
            .map(|_| {
                let mut socket = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0; config.socket_rx_bytes]),
                    tcp::SocketBuffer::new(vec![0; config.socket_tx_bytes]),
                );
                // Gives up on a peer that stops acknowledging, instead of retransmitting forever.
                socket.set_timeout(Some(Duration::from_millis(config.session.write_timeout_ms)));
                let _ = socket.listen(config.port);
                Slot { handle: sockets.add(socket), session: None, closed_at_ms: None }
            })
            .collect();
        let auth = Authenticator::new(tokens, config.rate_limit);
        ControlServer { config, iface, sockets, slots, dhcp, router: Router::new(auth, config.api) }
    }

    pub fn counters(&self) -> ControlCounters {
        self.router.counters
    }

    /// The interface and its sockets, e.g. to read the address DHCP gave, or for tests that put
    /// client sockets on the same interface.
    pub fn stack(&mut self) -> (&mut Interface, &mut SocketSet<'static>) {
        (&mut self.iface, &mut self.sockets)
    }

    /// Does a bounded amount of work and returns: at most `max_packets_per_poll` received
    /// packets, one request step per connection, one pass of transmission.
    pub fn poll<D: Device + ?Sized, B: GuestBackend + ?Sized>(
        &mut self,
        now_ms: u64,
        device: &mut D,
        backend: &mut B,
    ) -> PollStatus {
        let now = instant(now_ms);
        self.iface.poll_maintenance(now);
        let mut more_work = true;
        for _ in 0..self.config.max_packets_per_poll {
            if self.iface.poll_ingress_single(now, device, &mut self.sockets) == PollIngressSingleResult::None {
                more_work = false;
                break;
            }
        }
        self.poll_dhcp();
        for index in 0..self.slots.len() {
            self.serve_slot(index, now_ms, backend);
        }
        self.iface.poll_egress(now, device, &mut self.sockets);

        let session_deadline = self.slots.iter().filter_map(|s| s.session.as_ref()?.next_deadline_ms()).min();
        let stack_deadline = self.iface.poll_at(now, &self.sockets).map(|at| at.total_millis().max(0) as u64);
        let next_poll_ms = match (session_deadline, stack_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        PollStatus { more_work, next_poll_ms }
    }

    fn serve_slot<B: GuestBackend + ?Sized>(&mut self, index: usize, now_ms: u64, backend: &mut B) {
        let config = self.config;
        let handle = self.slots[index].handle;
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);

        if self.slots[index].session.is_none() {
            match socket.state() {
                tcp::State::Established | tcp::State::CloseWait => {
                    let Some(endpoint) = socket.remote_endpoint() else { return };
                    let peer = IpAddr::from(endpoint.addr);
                    let held =
                        self.slots.iter().filter(|s| s.session.as_ref().is_some_and(|s| s.peer() == peer)).count();
                    let session = if held >= config.max_connections_per_peer {
                        self.router.counters.connections_refused += 1;
                        self.router.counters.count_response(Status::TOO_MANY_REQUESTS);
                        log::warn!("control: {peer} holds {held} connections already; refusing another");
                        let refusal =
                            Response::error(Status::TOO_MANY_REQUESTS, "too many connections from this address");
                        Session::refusing(peer, config.session, refusal, now_ms)
                    } else {
                        self.router.counters.connections_accepted += 1;
                        Session::new(peer, config.session, now_ms)
                    };
                    self.slots[index].session = Some(session);
                }
                // Closed, or done with a previous connection: take the next one.
                _ if !socket.is_open() => {
                    self.slots[index].closed_at_ms = None;
                    let _ = socket.listen(config.port);
                    return;
                }
                _ => {
                    let lingered = self.slots[index]
                        .closed_at_ms
                        .is_some_and(|closed| now_ms.saturating_sub(closed) >= config.close_linger_ms);
                    if lingered {
                        socket.abort();
                    }
                    return;
                }
            }
        }

        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        let session = self.slots[index].session.as_mut().expect("session set above");
        if !socket.is_open() {
            // Reset by the peer, or timed out in smoltcp.
            self.slots[index].session = None;
            let _ = socket.listen(config.port);
            return;
        }
        // The receive ring may wrap once, so two reads take all that the session has room for.
        for _ in 0..2 {
            let room = session.room();
            if room == 0 || !socket.can_recv() {
                break;
            }
            let _ = socket.recv(|data| {
                let taken = data.len().min(room);
                session.receive(&data[..taken], now_ms);
                (taken, ())
            });
        }
        session.step(&mut self.router, backend, now_ms);
        if socket.can_send() && !session.pending_output().is_empty() {
            if let Ok(sent) = socket.send_slice(session.pending_output()) {
                session.sent(sent, now_ms);
            }
        }
        if !socket.may_recv() && socket.recv_queue() == 0 {
            session.peer_finished_sending();
        }
        if session.is_stalled(now_ms) {
            self.router.counters.connections_timed_out += 1;
            log::debug!("control: {}: client stopped reading; dropping the connection", session.peer());
            socket.abort();
            self.slots[index].session = None;
        } else if session.is_finished() {
            socket.close();
            self.slots[index].session = None;
            self.slots[index].closed_at_ms = Some(now_ms);
        }
    }

    fn poll_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
        match event {
            Some(dhcpv4::Event::Configured(lease)) => {
                log::info!("control: DHCP lease {}", lease.address);
                self.iface.update_ip_addrs(|addrs| {
                    addrs.clear();
                    let _ = addrs.push(IpCidr::Ipv4(lease.address));
                });
                match lease.router {
                    Some(router) => {
                        let _ = self.iface.routes_mut().add_default_ipv4_route(router);
                    }
                    None => {
                        self.iface.routes_mut().remove_default_ipv4_route();
                    }
                }
            }
            Some(dhcpv4::Event::Deconfigured) => {
                // The socket also reports this once at the start, before any lease.
                if !self.iface.ip_addrs().is_empty() {
                    log::warn!("control: DHCP lease lost");
                }
                self.iface.update_ip_addrs(|addrs| addrs.clear());
                self.iface.routes_mut().remove_default_ipv4_route();
            }
            None => {}
        }
    }
}

fn instant(now_ms: u64) -> Instant {
    Instant::from_millis(i64::try_from(now_ms).unwrap_or(i64::MAX))
}
