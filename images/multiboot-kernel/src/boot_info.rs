//! A copy of the multiboot information, taken before anything can
//! overwrite it (the memory check writes over all RAM above the kernel,
//! which is where loaders put these structures).

use crate::multiboot::{memory_map_entries, InfoHeader, MalformedEntry, Region, INFO_HEADER_SIZE};

const CMDLINE_CAPACITY: usize = 1024;
const LOADER_NAME_CAPACITY: usize = 64;
const REGION_CAPACITY: usize = 64;
/// More than any real map; a longer one is read only this far.
const MEMORY_MAP_MAX_BYTES: usize = 4096;
/// The identity mapping ends here; nothing above it can be read.
const MAPPED_LIMIT: u64 = 1 << 32;

pub struct BootInfo {
    pub address: u32,
    pub header: InfoHeader,
    cmdline: [u8; CMDLINE_CAPACITY],
    cmdline_length: usize,
    loader_name: [u8; LOADER_NAME_CAPACITY],
    loader_name_length: usize,
    regions: [Region; REGION_CAPACITY],
    region_count: usize,
    /// Entries beyond REGION_CAPACITY that were dropped.
    pub regions_dropped: usize,
    /// The memory map stopped at a malformed entry.
    pub map_error: Option<MalformedEntry>,
}

/// Guest-physical memory at `address`, identity-mapped; None if any of it
/// lies beyond the mapping. Only for what the loader or the firmware left
/// and the kernel never writes: the boot information (copied before the
/// kernel writes any memory outside its own image) and the ACPI tables.
pub fn physical<'a>(address: u64, length: usize) -> Option<&'a [u8]> {
    let end = address.checked_add(length as u64)?;
    if address == 0 || end > MAPPED_LIMIT {
        return None;
    }
    // Safe because the first 4 GiB are identity-mapped and nothing in
    // this kernel writes the loader's or the firmware's structures.
    // A loader that points outside RAM yields garbage (or, where nothing
    // is mapped outside RAM, a stopped guest), not undefined behaviour:
    // these are plain reads of bytes that are valid at any value.
    Some(unsafe { core::slice::from_raw_parts(address as *const u8, length) })
}

/// Copies the NUL-terminated string at `address` into `buffer`.
fn copy_string(address: u32, buffer: &mut [u8]) -> usize {
    let Some(source) = physical(u64::from(address), buffer.len()) else { return 0 };
    let length = source.iter().position(|&b| b == 0).unwrap_or(source.len());
    buffer[..length].copy_from_slice(&source[..length]);
    length
}

impl BootInfo {
    pub fn read(address: u32) -> Self {
        let mut info = Self {
            address,
            header: InfoHeader::default(),
            cmdline: [0; CMDLINE_CAPACITY],
            cmdline_length: 0,
            loader_name: [0; LOADER_NAME_CAPACITY],
            loader_name_length: 0,
            regions: [Region::default(); REGION_CAPACITY],
            region_count: 0,
            regions_dropped: 0,
            map_error: None,
        };
        let Some(bytes) = physical(u64::from(address), INFO_HEADER_SIZE) else { return info };
        info.header = InfoHeader::parse(bytes.try_into().expect("INFO_HEADER_SIZE bytes"));
        if let Some(cmdline) = info.header.cmdline {
            info.cmdline_length = copy_string(cmdline, &mut info.cmdline);
        }
        if let Some(name) = info.header.loader_name {
            info.loader_name_length = copy_string(name, &mut info.loader_name);
        }
        if let Some((map, length)) = info.header.memory_map {
            let length = (length as usize).min(MEMORY_MAP_MAX_BYTES);
            for entry in physical(u64::from(map), length).into_iter().flat_map(memory_map_entries) {
                match entry {
                    Ok(region) if info.region_count < REGION_CAPACITY => {
                        info.regions[info.region_count] = region;
                        info.region_count += 1;
                    }
                    Ok(_) => info.regions_dropped += 1,
                    Err(error) => info.map_error = Some(error),
                }
            }
        }
        info
    }

    /// The command line, up to its first byte that is not UTF-8.
    pub fn cmdline(&self) -> &str {
        valid_prefix(&self.cmdline[..self.cmdline_length])
    }

    pub fn loader_name(&self) -> Option<&str> {
        self.header.loader_name.map(|_| valid_prefix(&self.loader_name[..self.loader_name_length]))
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }
}

fn valid_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default(),
    }
}
