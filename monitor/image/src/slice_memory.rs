//! Guest RAM as the monitor sees it: one window of its address space.

use monitor::guest_memory::{GuestMemory, OutOfRange};

/// The guest's RAM, mapped contiguously (at guest-physical offsets).
pub struct SliceMemory<'a> {
    bytes: &'a mut [u8],
}

impl<'a> SliceMemory<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes }
    }
}

fn range(gpa: u64, len: usize, size: usize) -> Result<core::ops::Range<usize>, OutOfRange> {
    let start = usize::try_from(gpa).map_err(|_| OutOfRange { gpa, len: len as u64 })?;
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(OutOfRange { gpa, len: len as u64 }),
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        let range = range(gpa, buffer.len(), self.bytes.len())?;
        buffer.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let range = range(gpa, data.len(), self.bytes.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_inside_and_refuses_outside() {
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
}
