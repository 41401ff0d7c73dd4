//! The message ABI between the L0 shim and a guest's monitor.
//!
//! The two sides share one message page per vCPU. On every VM exit the shim
//! writes an [`Event`] there and switches to the monitor; the monitor
//! answers with a [`Response`], a list of [`Action`]s, and switches back.
//! The shim validates every action before applying it (see the shim's
//! `action_validation`): the ABI itself only guarantees that a message is
//! well formed.
//!
//! # Wire format (version 3)
//!
//! Little-endian throughout. Every message starts with a 16-byte header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"MTRY"` |
//! | 4 | 2 | ABI version ([`ABI_VERSION`]) |
//! | 6 | 2 | message kind ([`MessageKind`]) |
//! | 8 | 4 | payload length in bytes (at most [`MAX_PAYLOAD`]) |
//! | 12 | 4 | sequence number (a response repeats its event's) |
//!
//! The payload layouts are given with each type below. Decoding rejects a
//! wrong magic or version, an unknown kind or tag, a length that does not
//! match, counts and strings over their limits, and trailing bytes: a
//! monitor is untrusted, and so are the bytes it leaves in the page.
//!
//! The last [`TIMING_BYTES`] of the page are not part of any message: the
//! monitor writes four TSC values there, when it resumed with the event,
//! had decoded it, had decided its answer and had encoded it, so the shim
//! can measure the switch and profile the monitor (statistics only;
//! nothing depends on them).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod address_space;
pub mod boot_info;
mod codec;
mod message;

pub use codec::DecodeError;
pub use message::*;

#[cfg(test)]
mod tests;

/// The version this crate speaks. A change of layout changes it.
pub const ABI_VERSION: u16 = 3;
pub const MAGIC: [u8; 4] = *b"MTRY";
pub const HEADER_LEN: usize = 16;
/// A message must fit the shared page.
pub const MESSAGE_PAGE_SIZE: usize = 4096;
pub const MAX_PAYLOAD: usize = MESSAGE_PAGE_SIZE - HEADER_LEN - TIMING_BYTES;
/// The timing words at the end of the message page: u64 TSC values when
/// the monitor resumed, decoded, handled and answered.
pub const TIMING_BYTES: usize = 32;
pub const TIMING_OFFSET: usize = MESSAGE_PAGE_SIZE - TIMING_BYTES;
/// Most actions one response may carry.
pub const MAX_ACTIONS: usize = 160;
/// Longest text (console bytes, log lines, stop details) one action carries.
pub const MAX_TEXT: usize = 1024;

/// Cuts `text` to at most [`MAX_TEXT`] bytes, at a character boundary, so
/// that it fits a text action.
pub fn fit_text(text: &mut alloc::string::String) {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}
