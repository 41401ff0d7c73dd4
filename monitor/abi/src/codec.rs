//! Bounds-checked little-endian reading and writing.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Why a message was rejected. Each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Truncated { needed: usize, available: usize },
    BadMagic([u8; 4]),
    UnsupportedVersion(u16),
    UnknownKind(u16),
    PayloadTooLong(usize),
    LengthMismatch { header: usize, actual: usize },
    UnknownTag { what: &'static str, tag: u8 },
    TooMany { what: &'static str, count: usize, limit: usize },
    NotUtf8 { what: &'static str },
    TrailingBytes(usize),
    WrongKind { expected: &'static str, found: u16 },
    Invalid { what: &'static str, value: u64 },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "message truncated: needs {needed} more bytes, {available} left")
            }
            Self::BadMagic(magic) => write!(f, "bad magic {magic:02x?} (expected \"MTRY\")"),
            Self::UnsupportedVersion(version) => {
                write!(f, "ABI version {version} is not supported (this side speaks {})", crate::ABI_VERSION)
            }
            Self::UnknownKind(kind) => write!(f, "unknown message kind {kind}"),
            Self::PayloadTooLong(length) => {
                write!(f, "payload of {length} bytes exceeds the {}-byte limit", crate::MAX_PAYLOAD)
            }
            Self::LengthMismatch { header, actual } => {
                write!(f, "header says {header} payload bytes, {actual} were given")
            }
            Self::UnknownTag { what, tag } => write!(f, "unknown {what} tag {tag}"),
            Self::TooMany { what, count, limit } => write!(f, "{count} {what} exceed the limit of {limit}"),
            Self::NotUtf8 { what } => write!(f, "{what} is not UTF-8"),
            Self::TrailingBytes(count) => write!(f, "{count} unexpected bytes after the message"),
            Self::WrongKind { expected, found } => write!(f, "expected a {expected} message, found kind {found}"),
            Self::Invalid { what, value } => write!(f, "invalid {what}: {value:#x}"),
        }
    }
}

pub(crate) struct Writer<'a> {
    bytes: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(bytes: &'a mut Vec<u8>) -> Self {
        Self { bytes }
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn raw(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
    }

    /// A length-prefixed (u16) byte string.
    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.u16(value.len() as u16);
        self.bytes.extend_from_slice(value);
    }
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < count {
            return Err(DecodeError::Truncated { needed: count, available: self.bytes.len() });
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("two bytes")))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes")))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("eight bytes")))
    }

    pub(crate) fn raw(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        self.take(count)
    }

    pub(crate) fn bytes(&mut self, what: &'static str, limit: usize) -> Result<Vec<u8>, DecodeError> {
        let length = usize::from(self.u16()?);
        if length > limit {
            return Err(DecodeError::TooMany { what, count: length, limit });
        }
        Ok(self.take(length)?.to_vec())
    }

    pub(crate) fn text(&mut self, what: &'static str, limit: usize) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(what, limit)?).map_err(|_| DecodeError::NotUtf8 { what })
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.bytes.len()))
        }
    }
}
