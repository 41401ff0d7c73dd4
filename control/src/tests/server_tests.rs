//! The smoltcp server end to end on the host: clients are TCP sockets on the same interface,
//! talking through smoltcp's loopback device, with packets dropped by `FaultInjector`.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::phy::{Device, FaultInjector, Loopback, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Cidr};

use super::{backend, parse_answer, tokens, Answer, ACME};
use crate::fake::FakeBackend;
use crate::server::{Addressing, ControlServer, NetworkSetup, PollStatus, ServerConfig};
use crate::session::SessionLimits;

const PORT: u16 = 7000;
const TICK_MS: u64 = 5;

struct Client {
    handle: SocketHandle,
    to_send: Vec<u8>,
    received: Vec<u8>,
}

struct Net<D: Device> {
    server: ControlServer,
    device: D,
    backend: FakeBackend,
    now_ms: u64,
    clients: Vec<Client>,
    last_status: Option<PollStatus>,
}

impl<D: Device> Net<D> {
    fn new(config: ServerConfig, mut device: D) -> Self {
        super::logging::install();
        let network = NetworkSetup {
            mac: [0x02, 0, 0, 0, 0, 1],
            addressing: Addressing::Static { address: Ipv4Cidr::new(Ipv4Address::new(127, 0, 0, 1), 8), gateway: None },
            random_seed: 7,
        };
        let server = ControlServer::new(config, network, &mut device, tokens(), 0);
        Net { server, device, backend: backend(), now_ms: 0, clients: Vec::new(), last_status: None }
    }

    fn connect(&mut self) -> usize {
        let mut socket =
            tcp::Socket::new(tcp::SocketBuffer::new(vec![0; 65536]), tcp::SocketBuffer::new(vec![0; 8192]));
        let local_port = 40000 + self.clients.len() as u16;
        let (iface, sockets) = self.server.stack();
        socket.connect(iface.context(), (IpAddress::v4(127, 0, 0, 1), PORT), local_port).expect("connect");
        let handle = sockets.add(socket);
        self.clients.push(Client { handle, to_send: Vec::new(), received: Vec::new() });
        self.clients.len() - 1
    }

    fn send(&mut self, client: usize, bytes: &[u8]) {
        self.clients[client].to_send.extend_from_slice(bytes);
    }

    fn state(&mut self, client: usize) -> tcp::State {
        let handle = self.clients[client].handle;
        self.server.stack().1.get::<tcp::Socket>(handle).state()
    }

    fn tick(&mut self) {
        self.now_ms += TICK_MS;
        self.last_status = Some(self.server.poll(self.now_ms, &mut self.device, &mut self.backend));
        let (_, sockets) = self.server.stack();
        for client in &mut self.clients {
            let socket = sockets.get_mut::<tcp::Socket>(client.handle);
            if socket.can_send() && !client.to_send.is_empty() {
                let sent = socket.send_slice(&client.to_send).unwrap_or(0);
                client.to_send.drain(..sent);
            }
            while socket.can_recv() {
                let _ = socket.recv(|data| {
                    client.received.extend_from_slice(data);
                    (data.len(), ())
                });
            }
        }
    }

    /// Ticks until `client` has a whole response, and takes it off its input.
    fn answer(&mut self, client: usize, within_ms: u64) -> Option<Answer> {
        let until = self.now_ms + within_ms;
        while self.now_ms < until {
            self.tick();
            if let Some((answer, used)) = parse_answer(&self.clients[client].received) {
                self.clients[client].received.drain(..used);
                return Some(answer);
            }
        }
        None
    }

    fn run_for(&mut self, ms: u64) {
        let until = self.now_ms + ms;
        while self.now_ms < until {
            self.tick();
        }
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: shim\r\nAuthorization: Bearer {ACME}\r\n\r\n").into_bytes()
}

#[test]
fn a_request_is_served_over_the_loopback_device() {
    let mut net = Net::new(ServerConfig::default(), Loopback::new(Medium::Ethernet));
    let client = net.connect();
    net.send(client, &get("/v1/guests"));
    let answer = net.answer(client, 1_000).expect("an answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["guests"][0]["name"], "acme-web");
    assert_eq!(net.server.counters().connections_accepted, 1);
}

#[test]
fn requests_and_a_large_console_read_survive_packet_loss() {
    let mut device = FaultInjector::new(Loopback::new(Medium::Ethernet), 0x5eed);
    // Applied on transmit and on receive: 19% of packets are lost.
    device.set_drop_chance(10);
    let mut net = Net::new(ServerConfig::default(), device);
    let console: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    net.backend = FakeBackend::new(65536).with_guest("acme-web", Some("acme"));
    net.backend.write_console("acme-web", &console);
    let client = net.connect();
    for round in 0..8 {
        net.send(client, &get("/v1/guests/acme-web"));
        let Some(answer) = net.answer(client, 60_000) else {
            let state = net.state(client);
            panic!(
                "round {round} unanswered: {state:?} {:?} {:?} {}",
                net.server.counters(),
                net.clients[client].to_send.len(),
                net.clients[client].received.len()
            );
        };
        assert_eq!(answer.json()["state"], "running");
    }
    net.send(client, &get("/v1/guests/acme-web/console?offset=0"));
    let answer = net.answer(client, 120_000).expect("the console");
    assert_eq!(answer.body, console);
    assert_eq!(net.server.counters().connections_accepted, 1, "one kept-alive connection throughout");
}

fn small_server(max_connections: usize, per_peer: usize) -> ServerConfig {
    ServerConfig {
        max_connections,
        max_connections_per_peer: per_peer,
        session: SessionLimits { request_timeout_ms: 2_000, idle_timeout_ms: 3_000, ..SessionLimits::default() },
        ..ServerConfig::default()
    }
}

#[test]
fn a_slow_loris_does_not_hold_up_others_and_is_timed_out() {
    let mut net = Net::new(small_server(4, 3), Loopback::new(Medium::Ethernet));
    let loris = net.connect();
    net.send(loris, b"GET /v1/gu");
    net.run_for(200);
    let other = net.connect();
    net.send(other, &get("/v1/host"));
    let answer = net.answer(other, 500).expect("served while the loris waits");
    assert_eq!(answer.status, 200);
    let answer = net.answer(loris, 3_000).expect("the loris hears back");
    assert_eq!(answer.status, 408);
    net.run_for(500);
    assert!(matches!(net.state(loris), tcp::State::CloseWait | tcp::State::Closed | tcp::State::TimeWait));
    assert_eq!(net.server.counters().connections_timed_out, 1);
}

#[test]
fn one_peer_cannot_take_every_connection() {
    let mut net = Net::new(small_server(4, 2), Loopback::new(Medium::Ethernet));
    let first = net.connect();
    let second = net.connect();
    net.run_for(100);
    let third = net.connect();
    let answer = net.answer(third, 1_000).expect("a refusal");
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("Connection"), Some("close"));
    for client in [first, second] {
        net.send(client, &get("/v1/host"));
        assert_eq!(net.answer(client, 1_000).expect("still served").status, 200);
    }
    assert_eq!(net.server.counters().connections_refused, 1);
}

#[test]
fn connections_beyond_the_sockets_are_reset_and_freed_slots_are_reused() {
    let mut net = Net::new(small_server(2, 2), Loopback::new(Medium::Ethernet));
    let first = net.connect();
    let _second = net.connect();
    net.run_for(100);
    let third = net.connect();
    net.run_for(100);
    assert_eq!(net.state(third), tcp::State::Closed, "no listener left: reset");

    net.send(first, b"GET /v1/host HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(net.answer(first, 1_000).unwrap().status, 401);
    // The first client never closes its side; the server resets it after the linger time.
    net.run_for(ServerConfig::default().close_linger_ms + 100);
    let fourth = net.connect();
    net.send(fourth, &get("/v1/host"));
    assert_eq!(net.answer(fourth, 1_000).expect("the freed socket listens again").status, 200);
}

#[test]
fn idle_connections_are_closed() {
    let mut net = Net::new(small_server(2, 2), Loopback::new(Medium::Ethernet));
    let client = net.connect();
    net.run_for(2_900);
    assert_eq!(net.state(client), tcp::State::Established);
    net.run_for(300);
    assert!(!matches!(net.state(client), tcp::State::Established), "closed after the idle timeout");
}

#[test]
fn a_small_packet_budget_still_makes_progress_and_says_so() {
    let config = ServerConfig { max_packets_per_poll: 1, ..ServerConfig::default() };
    let mut net = Net::new(config, Loopback::new(Medium::Ethernet));
    net.backend.write_console("acme-web", &[b'z'; 3000]);
    let clients: Vec<usize> = (0..3).map(|_| net.connect()).collect();
    for &client in &clients {
        net.send(client, &get("/v1/guests/acme-web/console"));
    }
    let mut saw_more_work = false;
    for &client in &clients {
        let until = net.now_ms + 2_000;
        let answer = loop {
            net.tick();
            saw_more_work |= net.last_status.is_some_and(|s| s.more_work);
            if let Some((answer, _)) = parse_answer(&net.clients[client].received) {
                break answer;
            }
            assert!(net.now_ms < until, "client {client} unanswered");
        };
        assert_eq!(answer.body.len(), 3000);
    }
    assert!(saw_more_work, "a poll that leaves packets behind says so");
    let next = net.last_status.and_then(|s| s.next_poll_ms).expect("open connections have deadlines");
    assert!(next > net.now_ms);
}
