//! Emulated devices: plain structs behind read/write calls.
