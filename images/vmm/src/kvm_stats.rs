//! KVM's binary statistics for one vCPU (KVM_GET_STATS_FD, Linux 5.14+):
//! how a benchmark counts the exits that KVM, as L0, took for its guest,
//! without debugfs. The file holds a header, one descriptor per counter
//! and the counters' values; only the values change between reads.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use kvm_ioctls::VcpuFd;

/// _IO(KVMIO, 0xce).
const KVM_GET_STATS_FD: libc::c_ulong = 0xaece;
const HEADER_BYTES: usize = 24;
/// flags, exponent, size, offset, bucket_size; then the name.
const DESCRIPTOR_FIXED_BYTES: usize = 16;
const TYPE_MASK: u32 = 0xf;
const TYPE_CUMULATIVE: u32 = 0;
const UNIT_MASK: u32 = 0xf0;
const UNIT_NONE: u32 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub name: String,
    pub flags: u32,
    /// Number of u64 values.
    pub size: u16,
    /// Offset of the first value from the data block.
    pub offset: u32,
}

impl Descriptor {
    /// A plain event count (not a time, a peak or a histogram): what
    /// "exits", "io_exits" or "nested_run" are.
    fn is_event_count(&self) -> bool {
        self.flags & TYPE_MASK == TYPE_CUMULATIVE && self.flags & UNIT_MASK == UNIT_NONE && self.size == 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub descriptors: Vec<Descriptor>,
    pub data_offset: u64,
    /// Bytes of the data block that hold the values.
    pub data_bytes: usize,
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(offset..offset + 4)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(offset..offset + 2)?.try_into().ok()?))
}

/// (descriptor block offset, count, bytes per descriptor, data offset)
/// from the header.
pub fn parse_header(header: &[u8]) -> Result<(u64, usize, usize, u64), String> {
    let field = |index: usize| u32_at(header, index * 4).ok_or("the statistics header is truncated");
    let name_size = field(1)? as usize;
    let count = field(2)? as usize;
    Ok((u64::from(field(4)?), count, DESCRIPTOR_FIXED_BYTES + name_size, u64::from(field(5)?)))
}

/// The descriptors from their block (`count` of `stride` bytes each).
pub fn parse_descriptors(block: &[u8], count: usize, stride: usize, data_offset: u64) -> Result<Layout, String> {
    let mut descriptors = Vec::with_capacity(count);
    let mut data_bytes = 0;
    for index in 0..count {
        let entry = block
            .get(index * stride..(index + 1) * stride)
            .ok_or_else(|| format!("statistics descriptor {index} is truncated"))?;
        let truncated = || format!("statistics descriptor {index} is truncated");
        let flags = u32_at(entry, 0).ok_or_else(truncated)?;
        let size = u16_at(entry, 6).ok_or_else(truncated)?;
        let offset = u32_at(entry, 8).ok_or_else(truncated)?;
        let name_bytes = &entry[DESCRIPTOR_FIXED_BYTES..];
        let name_end = name_bytes.iter().position(|&byte| byte == 0).unwrap_or(name_bytes.len());
        let name = String::from_utf8_lossy(&name_bytes[..name_end]).into_owned();
        data_bytes = data_bytes.max(offset as usize + usize::from(size) * 8);
        descriptors.push(Descriptor { name, flags, size, offset });
    }
    Ok(Layout { descriptors, data_offset, data_bytes })
}

/// The event counters' values from the data block, in descriptor order.
pub fn event_counts<'a>(layout: &'a Layout, data: &[u8]) -> Vec<(&'a str, u64)> {
    layout
        .descriptors
        .iter()
        .filter(|descriptor| descriptor.is_event_count())
        .filter_map(|descriptor| {
            let start = descriptor.offset as usize;
            let value = u64::from_le_bytes(data.get(start..start + 8)?.try_into().ok()?);
            Some((descriptor.name.as_str(), value))
        })
        .collect()
}

/// `name=value` for every counter that is not zero, "exits" first.
pub fn format_counts(counts: &[(&str, u64)]) -> String {
    let mut text = String::new();
    let exits = counts.iter().filter(|(name, _)| *name == "exits");
    let others = counts.iter().filter(|(name, value)| *name != "exits" && *value != 0);
    for (name, value) in exits.chain(others) {
        let _ = write!(text, "{}{name}={value}", if text.is_empty() { "" } else { " " });
    }
    text
}

/// A vCPU's statistics file and its layout.
pub struct VcpuStats {
    file: File,
    layout: Layout,
}

impl VcpuStats {
    pub fn open(vcpu: &VcpuFd) -> io::Result<Self> {
        // Safe because KVM_GET_STATS_FD takes no argument and returns a new
        // file descriptor (or -1), and vcpu is a valid vCPU descriptor.
        let fd = unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_GET_STATS_FD as _) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Safe because the ioctl just returned this descriptor to us alone.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut header = [0u8; HEADER_BYTES];
        file.read_exact_at(&mut header, 0)?;
        let invalid = |error: String| io::Error::new(io::ErrorKind::InvalidData, error);
        let (descriptors_offset, count, stride, data_offset) = parse_header(&header).map_err(invalid)?;
        let mut block = vec![0u8; count * stride];
        file.read_exact_at(&mut block, descriptors_offset)?;
        let layout = parse_descriptors(&block, count, stride, data_offset).map_err(invalid)?;
        Ok(Self { file, layout })
    }

    /// The current values, formatted by [`format_counts`].
    pub fn read(&self) -> io::Result<String> {
        let mut data = vec![0u8; self.layout.data_bytes];
        self.file.read_exact_at(&mut data, self.layout.data_offset)?;
        Ok(format_counts(&event_counts(&self.layout, &data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME_SIZE: usize = 48;

    /// A statistics file as KVM lays it out: header, id, descriptors, data.
    fn stats_file(counters: &[(&str, u32, u64)]) -> Vec<u8> {
        let stride = DESCRIPTOR_FIXED_BYTES + NAME_SIZE;
        let descriptors_offset = HEADER_BYTES + NAME_SIZE;
        let data_offset = descriptors_offset + counters.len() * stride;
        let mut file = Vec::new();
        for value in [0, NAME_SIZE, counters.len(), HEADER_BYTES, descriptors_offset, data_offset] {
            file.extend_from_slice(&(value as u32).to_le_bytes());
        }
        file.resize(descriptors_offset, 0); // the id string
        for (index, (name, flags, _)) in counters.iter().enumerate() {
            file.extend_from_slice(&flags.to_le_bytes());
            file.extend_from_slice(&0i16.to_le_bytes()); // exponent
            file.extend_from_slice(&1u16.to_le_bytes()); // size
            file.extend_from_slice(&((index * 8) as u32).to_le_bytes());
            file.extend_from_slice(&0u32.to_le_bytes()); // bucket size
            let mut name_field = name.as_bytes().to_vec();
            name_field.resize(NAME_SIZE, 0);
            file.extend_from_slice(&name_field);
        }
        for (_, _, value) in counters {
            file.extend_from_slice(&value.to_le_bytes());
        }
        file
    }

    fn parse(file: &[u8]) -> Layout {
        let (offset, count, stride, data_offset) = parse_header(file).unwrap();
        parse_descriptors(&file[offset as usize..], count, stride, data_offset).unwrap()
    }

    #[test]
    fn event_counters_are_read_and_times_peaks_and_instants_left_out() {
        let file = stats_file(&[
            ("halt_wait_ns", 0x20 | 0x100, 999), // cumulative, seconds (ns)
            ("exits", 0, 1234),
            ("io_exits", 0, 56),
            ("guest_mode", 1, 1), // instant
            ("nested_run", 0, 0),
            ("max_mmu_page_hash_collisions", 2, 3), // peak
        ]);
        let layout = parse(&file);
        assert_eq!(layout.descriptors.len(), 6);
        assert_eq!(layout.descriptors[1].name, "exits");
        let data = &file[layout.data_offset as usize..][..layout.data_bytes];
        let counts = event_counts(&layout, data);
        assert_eq!(counts, [("exits", 1234), ("io_exits", 56), ("nested_run", 0)]);
        assert_eq!(format_counts(&counts), "exits=1234 io_exits=56");
    }

    #[test]
    fn exits_is_always_shown_and_first() {
        assert_eq!(format_counts(&[("io_exits", 3), ("exits", 0)]), "exits=0 io_exits=3");
    }

    #[test]
    fn a_truncated_file_is_an_error_not_garbage() {
        let file = stats_file(&[("exits", 0, 1)]);
        assert!(parse_header(&file[..10]).is_err());
        let (offset, count, stride, data_offset) = parse_header(&file).unwrap();
        let block = &file[offset as usize..offset as usize + stride - 1];
        assert_eq!(
            parse_descriptors(block, count, stride, data_offset),
            Err("statistics descriptor 0 is truncated".to_string())
        );
    }
}
