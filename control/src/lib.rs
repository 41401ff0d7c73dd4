//! Matryoshka's control plane as it runs inside the shim: an HTTP/1.1 + JSON server over
//! smoltcp TCP, with bearer tokens bound to tenants. Everything here is plain `no_std` logic
//! that the shim drives with a clock and a network device, so all of it is tested on the host.
//!
//! - [`http`]: request framing with limits, response encoding.
//! - [`auth`]: tokens, tenants, failed-attempt limits.
//! - [`api`]: routes, the [`api::GuestBackend`] trait the shim implements, the router.
//! - [`session`]: one connection's state machine, with slow-client deadlines.
//! - [`server`]: the smoltcp server, polled in bounded steps.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod api;
pub mod auth;
#[cfg(any(test, feature = "fake-backend"))]
pub mod fake;
pub mod http;
pub mod metrics;
pub mod model;
pub mod server;
pub mod session;
#[cfg(feature = "std")]
pub mod std_server;

#[cfg(test)]
mod tests;
