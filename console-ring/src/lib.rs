//! The guest's console output: a bounded ring of bytes with absolute offsets.
//!
//! Every byte the guest ever wrote has an offset: the first is 0, the next
//! 1, and so on. The ring keeps only the newest `capacity` of them, so a
//! reader (the control API, the log) asks for "the bytes from offset N" and
//! learns how many it missed if it fell behind, and where to continue.
//!
//! The monitor keeps one per guest for its serial port; the shim keeps one
//! per guest for the control API's console endpoint.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

/// A bounded ring of console bytes, addressed by absolute offset.
#[derive(Debug, Clone)]
pub struct ConsoleBuffer {
    ring: Vec<u8>,
    /// Bytes ever written: the offset the next byte will get.
    end: u64,
}

/// What [`ConsoleBuffer::read_from`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleRead {
    /// The offset of the first byte copied.
    pub offset: u64,
    /// How many bytes were copied.
    pub len: usize,
    /// Bytes between the requested offset and `offset` that the ring no
    /// longer holds.
    pub missed: u64,
}

impl ConsoleRead {
    /// The offset to ask for next.
    pub fn next_offset(&self) -> u64 {
        self.offset + self.len as u64
    }
}

impl ConsoleBuffer {
    /// A ring that keeps the newest `capacity` bytes (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { ring: vec![0; capacity.max(1)], end: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// The offset of the oldest byte still held.
    pub fn start_offset(&self) -> u64 {
        self.end.saturating_sub(self.ring.len() as u64)
    }

    /// Bytes ever written: one past the newest byte's offset.
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// Bytes currently held.
    pub fn len(&self) -> usize {
        (self.end - self.start_offset()) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    pub fn push(&mut self, byte: u8) {
        let slot = (self.end % self.ring.len() as u64) as usize;
        self.ring[slot] = byte;
        self.end += 1;
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push(byte);
        }
    }

    /// Copies bytes from `offset` on into `out`, as many as fit and are held.
    ///
    /// An offset older than [`start_offset`](Self::start_offset) starts at
    /// the oldest byte held and reports the gap in `missed`; an offset past
    /// the end copies nothing.
    pub fn read_from(&self, offset: u64, out: &mut [u8]) -> ConsoleRead {
        let start = offset.clamp(self.start_offset(), self.end);
        let missed = start.saturating_sub(offset);
        let len = out.len().min((self.end - start) as usize);
        let capacity = self.ring.len() as u64;
        for (i, byte) in out[..len].iter_mut().enumerate() {
            *byte = self.ring[((start + i as u64) % capacity) as usize];
        }
        ConsoleRead { offset: start, len, missed }
    }

    /// All bytes held from `offset` on, with where they start and how many
    /// were missed.
    pub fn to_vec_from(&self, offset: u64) -> (ConsoleRead, Vec<u8>) {
        let mut bytes = vec![0; self.len()];
        let read = self.read_from(offset, &mut bytes);
        bytes.truncate(read.len);
        (read, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_until_full() {
        let mut console = ConsoleBuffer::new(8);
        assert!(console.is_empty());
        console.extend(b"hello");
        assert_eq!((console.start_offset(), console.end_offset(), console.len()), (0, 5, 5));
        let (read, bytes) = console.to_vec_from(0);
        assert_eq!(read, ConsoleRead { offset: 0, len: 5, missed: 0 });
        assert_eq!(bytes, b"hello");
        let (read, bytes) = console.to_vec_from(3);
        assert_eq!(read, ConsoleRead { offset: 3, len: 2, missed: 0 });
        assert_eq!(bytes, b"lo");
        assert_eq!(read.next_offset(), 5);
    }

    #[test]
    fn a_reader_that_fell_behind_learns_what_it_missed() {
        let mut console = ConsoleBuffer::new(4);
        console.extend(b"abcdefghij");
        assert_eq!((console.start_offset(), console.end_offset(), console.len()), (6, 10, 4));
        let (read, bytes) = console.to_vec_from(2);
        assert_eq!(read, ConsoleRead { offset: 6, len: 4, missed: 4 });
        assert_eq!(bytes, b"ghij");
        let (read, bytes) = console.to_vec_from(8);
        assert_eq!(read, ConsoleRead { offset: 8, len: 2, missed: 0 });
        assert_eq!(bytes, b"ij");
    }

    #[test]
    fn small_reads_page_through_and_the_future_is_empty() {
        let mut console = ConsoleBuffer::new(16);
        console.extend(b"0123456789");
        let mut out = [0; 3];
        let read = console.read_from(4, &mut out);
        assert_eq!(read, ConsoleRead { offset: 4, len: 3, missed: 0 });
        assert_eq!(&out, b"456");
        let read = console.read_from(read.next_offset(), &mut out);
        assert_eq!(&out[..read.len], b"789");
        assert_eq!(console.read_from(10, &mut out), ConsoleRead { offset: 10, len: 0, missed: 0 });
        assert_eq!(console.read_from(99, &mut out), ConsoleRead { offset: 10, len: 0, missed: 0 });
    }

    #[test]
    fn a_zero_capacity_still_keeps_the_newest_byte() {
        let mut console = ConsoleBuffer::new(0);
        console.extend(b"xyz");
        assert_eq!(console.capacity(), 1);
        assert_eq!(console.to_vec_from(0).1, b"z");
    }
}
