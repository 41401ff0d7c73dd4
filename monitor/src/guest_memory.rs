//! The guest's physical memory, as the monitor sees it.
//!
//! Every access is checked: a guest-controlled address that falls outside
//! the guest's RAM is an error for the caller to turn into a clear guest
//! stop or an injected fault, never a wild access.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A guest-physical access outside the guest's RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub gpa: u64,
    pub len: u64,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guest-physical access of {} bytes at {:#x} is outside the guest's RAM", self.len, self.gpa)
    }
}

/// Guest RAM: `[0, size)` in guest-physical addresses.
pub trait GuestMemory {
    /// Bytes of guest RAM.
    fn size(&self) -> u64;
    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange>;
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange>;

    /// Whether `[gpa, gpa + len)` lies in guest RAM.
    fn contains(&self, gpa: u64, len: u64) -> bool {
        gpa.checked_add(len).is_some_and(|end| end <= self.size())
    }

    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfRange> {
        if !self.contains(gpa, len) {
            return Err(OutOfRange { gpa, len });
        }
        const CHUNK: usize = 4096;
        let chunk = [byte; CHUNK];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            self.write(gpa + done, &chunk[..n])?;
            done += n as u64;
        }
        Ok(())
    }

    fn read_u16(&self, gpa: u64) -> Result<u16, OutOfRange> {
        let mut bytes = [0; 2];
        self.read(gpa, &mut bytes)?;
        Ok(u16::from_le_bytes(bytes))
    }

    fn read_u32(&self, gpa: u64) -> Result<u32, OutOfRange> {
        let mut bytes = [0; 4];
        self.read(gpa, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn read_u64(&self, gpa: u64) -> Result<u64, OutOfRange> {
        let mut bytes = [0; 8];
        self.read(gpa, &mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn write_u16(&mut self, gpa: u64, value: u16) -> Result<(), OutOfRange> {
        self.write(gpa, &value.to_le_bytes())
    }

    fn write_u32(&mut self, gpa: u64, value: u32) -> Result<(), OutOfRange> {
        self.write(gpa, &value.to_le_bytes())
    }

    fn write_u64(&mut self, gpa: u64, value: u64) -> Result<(), OutOfRange> {
        self.write(gpa, &value.to_le_bytes())
    }
}

/// Guest RAM in a vector: for host tests, and for staging.
#[derive(Clone, PartialEq, Eq)]
pub struct VecMemory {
    bytes: Vec<u8>,
}

impl VecMemory {
    pub fn new(size: usize) -> Self {
        Self { bytes: vec![0; size] }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for VecMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VecMemory({} bytes)", self.bytes.len())
    }
}

impl GuestMemory for VecMemory {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        let range = checked_range(gpa, buffer.len(), self.bytes.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let range = checked_range(gpa, data.len(), self.bytes.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}

/// Guest RAM that is already mapped contiguously, guest-physical 0 first:
/// what the monitor image sees at its guest-RAM window.
pub struct SliceMemory<'a> {
    bytes: &'a mut [u8],
}

impl<'a> SliceMemory<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes }
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        let range = checked_range(gpa, buffer.len(), self.bytes.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let range = checked_range(gpa, data.len(), self.bytes.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}

fn checked_range(gpa: u64, len: usize, size: usize) -> Result<core::ops::Range<usize>, OutOfRange> {
    let error = OutOfRange { gpa, len: len as u64 };
    let start = usize::try_from(gpa).map_err(|_| error)?;
    let end = start.checked_add(len).ok_or(error)?;
    if end > size {
        return Err(error);
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    #[test]
    fn slice_memory_reads_and_writes_inside_and_refuses_outside() {
        let mut backing = [0u8; 64];
        let mut memory = SliceMemory::new(&mut backing);
        memory.write(60, &[1, 2, 3, 4]).unwrap();
        let mut word = [0u8; 4];
        memory.read(60, &mut word).unwrap();
        assert_eq!(word, [1, 2, 3, 4]);
        assert!(memory.write(61, &[0; 4]).is_err());
        assert!(memory.read(u64::MAX, &mut word).is_err());
        assert!(memory.write(u64::MAX - 1, &[0; 4]).is_err());
        assert_eq!(memory.size(), 64);
        assert_eq!(backing[63], 4);
    }

    use super::*;

    #[test]
    fn reads_and_writes_inside_and_refuses_outside() {
        let mut memory = VecMemory::new(0x1000);
        memory.write_u32(0xffc, 0xdead_beef).unwrap();
        assert_eq!(memory.read_u32(0xffc).unwrap(), 0xdead_beef);
        assert_eq!(memory.read_u16(0xffe).unwrap(), 0xdead);
        assert_eq!(memory.write_u32(0xffd, 1), Err(OutOfRange { gpa: 0xffd, len: 4 }));
        assert_eq!(memory.read_u64(u64::MAX - 3), Err(OutOfRange { gpa: u64::MAX - 3, len: 8 }));
        assert!(memory.contains(0, 0x1000) && !memory.contains(1, 0x1000) && !memory.contains(u64::MAX, 2));
        memory.fill(0x10, 0x20, 0xaa).unwrap();
        assert!(memory.as_slice()[0x10..0x30].iter().all(|&b| b == 0xaa));
        assert_eq!(memory.as_slice()[0x30], 0);
        assert!(memory.fill(0xff0, 0x20, 0).is_err());
    }
}
