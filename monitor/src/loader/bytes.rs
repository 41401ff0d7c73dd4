//! Little-endian fields of untrusted files, and of structures being built.
//!
//! Reads return `None` past the end instead of panicking, so every caller
//! has to say what a short file means.

pub(crate) fn u8_at(bytes: &[u8], offset: usize) -> Option<u8> {
    bytes.get(offset).copied()
}

pub(crate) fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    array_at(bytes, offset).map(u16::from_le_bytes)
}

pub(crate) fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    array_at(bytes, offset).map(u32::from_le_bytes)
}

pub(crate) fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    array_at(bytes, offset).map(u64::from_le_bytes)
}

fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    bytes.get(offset..end)?.try_into().ok()
}

/// A structure under construction in a byte buffer (the Multiboot
/// information, `boot_params`). Offsets are the loader's own constants, so
/// writing past the end is a loader bug and the write is dropped rather than
/// panicking; the tests read every field back.
pub(crate) struct StructWriter<'a> {
    bytes: &'a mut [u8],
}

impl<'a> StructWriter<'a> {
    pub(crate) fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn put(&mut self, offset: usize, data: &[u8]) {
        let target = offset.checked_add(data.len()).and_then(|end| self.bytes.get_mut(offset..end));
        debug_assert!(target.is_some(), "structure field at {offset:#x} outside the buffer");
        if let Some(target) = target {
            target.copy_from_slice(data);
        }
    }

    pub(crate) fn put_u8(&mut self, offset: usize, value: u8) {
        self.put(offset, &[value]);
    }

    pub(crate) fn put_u16(&mut self, offset: usize, value: u16) {
        self.put(offset, &value.to_le_bytes());
    }

    pub(crate) fn put_u32(&mut self, offset: usize, value: u32) {
        self.put(offset, &value.to_le_bytes());
    }

    pub(crate) fn put_u64(&mut self, offset: usize, value: u64) {
        self.put(offset, &value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end_of_the_file() {
        let bytes = [1, 2, 3, 4, 5];
        assert_eq!(u8_at(&bytes, 4), Some(5));
        assert_eq!(u8_at(&bytes, 5), None);
        assert_eq!(u16_at(&bytes, 3), Some(0x0504));
        assert_eq!(u16_at(&bytes, 4), None);
        assert_eq!(u32_at(&bytes, 1), Some(0x0504_0302));
        assert_eq!(u32_at(&bytes, 2), None);
        assert_eq!(u64_at(&bytes, 0), None);
        assert_eq!(u32_at(&bytes, usize::MAX), None);
        assert_eq!(u64_at(&[0x11; 8], 0), Some(0x1111_1111_1111_1111));
    }

    #[test]
    fn writer_puts_little_endian_fields() {
        let mut buffer = [0u8; 16];
        let mut writer = StructWriter::new(&mut buffer);
        writer.put_u8(0, 0xab);
        writer.put_u16(1, 0x1234);
        writer.put_u32(4, 0xdead_beef);
        writer.put_u64(8, 0x0102_0304_0506_0708);
        assert_eq!(buffer, [0xab, 0x34, 0x12, 0, 0xef, 0xbe, 0xad, 0xde, 8, 7, 6, 5, 4, 3, 2, 1]);
    }
}
