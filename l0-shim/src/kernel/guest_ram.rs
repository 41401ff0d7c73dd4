//! A guest's RAM: one contiguous run of host frames, mapped at
//! guest-physical 0 by the guest's own EPT (EPT01), built from frames that
//! belong to that guest alone.

use l0_shim::layout::phys_to_virt;
use l0_shim::memory::{EptFlags, EptPaging, MapError, MemoryType, PageSize, PageTableBuilder, PhysAddr, PhysRange};
use monitor::guest_memory::{GuestMemory, OutOfRange};

use crate::arch::vmx_instructions::{invept, InveptKind};
use crate::kernel::memory::{self, DirectMap};

/// Guest RAM is handed out in 2 MiB-aligned runs so EPT can map it with
/// large pages.
const RAM_ALIGNMENT: u64 = 2 << 20;
/// EPTP: write-back paging structures, 4-level walk (SDM 25.6.11).
const EPTP_WRITE_BACK: u64 = 6;
const EPTP_WALK_LENGTH_4: u64 = 3 << 3;

pub struct GuestRam {
    host: PhysRange,
    ept_root: PhysAddr,
    /// EPT paging-structure frames, returned when the guest goes.
    ept_frames: alloc::vec::Vec<PhysAddr>,
}

#[derive(Debug)]
pub enum GuestRamError {
    OutOfMemory { bytes: u64 },
    Ept(MapError),
}

impl core::fmt::Display for GuestRamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfMemory { bytes } => write!(f, "not enough free memory for {} MiB of guest RAM", bytes >> 20),
            Self::Ept(error) => write!(f, "building the guest's EPT failed: {error:?}"),
        }
    }
}

/// Counts the frames the EPT builder takes, so they can be freed.
struct TrackingFrames<'a> {
    frames: &'a mut l0_shim::memory::FrameAllocator,
    taken: &'a mut alloc::vec::Vec<PhysAddr>,
}

impl l0_shim::memory::FrameSource for TrackingFrames<'_> {
    fn alloc_frame(&mut self) -> Option<PhysAddr> {
        let frame = self.frames.alloc_frame()?;
        self.taken.push(frame);
        Some(frame)
    }

    fn free_frame(&mut self, frame: PhysAddr) {
        self.taken.retain(|&taken| taken != frame);
        let _ = self.frames.free(PhysRange::frame(frame));
    }
}

impl GuestRam {
    /// Allocates `bytes` (rounded up to 2 MiB) of zeroed RAM and its EPT.
    pub fn new(bytes: u64) -> Result<Self, GuestRamError> {
        let bytes = bytes.div_ceil(RAM_ALIGNMENT) * RAM_ALIGNMENT;
        let host = memory::with_frames(|frames| frames.alloc_contiguous(bytes / 4096, RAM_ALIGNMENT))
            .ok_or(GuestRamError::OutOfMemory { bytes })?;
        let mut ept_frames = alloc::vec::Vec::new();
        let built = memory::with_frames(|frames| {
            let mut source = TrackingFrames { frames, taken: &mut ept_frames };
            let mut direct_map = DirectMap;
            let mut ept = PageTableBuilder::<EptPaging, _, _>::new(&mut direct_map, &mut source)?;
            let ram = EptFlags::READ | EptFlags::WRITE | EptFlags::EXECUTE;
            ept.map_range(0, host.start, bytes, ram.with_memory_type(MemoryType::WriteBack), PageSize::Size2M)?;
            Ok(ept.root())
        });
        match built {
            Ok(ept_root) => {
                let mut ram = Self { host, ept_root, ept_frames };
                let _ = ram.fill(0, bytes, 0);
                Ok(ram)
            }
            Err(error) => {
                memory::with_frames(|frames| {
                    let _ = frames.free(host);
                    for frame in ept_frames {
                        let _ = frames.free(PhysRange::frame(frame));
                    }
                });
                Err(GuestRamError::Ept(error))
            }
        }
    }

    pub fn eptp(&self) -> u64 {
        self.ept_root.as_u64() | EPTP_WALK_LENGTH_4 | EPTP_WRITE_BACK
    }

    fn host_pointer(&self, gpa: u64, len: usize) -> Result<*mut u8, OutOfRange> {
        if !self.contains(gpa, len as u64) {
            return Err(OutOfRange { gpa, len: len as u64 });
        }
        Ok(phys_to_virt(self.host.start.as_u64() + gpa) as *mut u8)
    }
}

impl GuestMemory for GuestRam {
    fn size(&self) -> u64 {
        self.host.len()
    }

    fn read(&self, gpa: u64, buffer: &mut [u8]) -> Result<(), OutOfRange> {
        let source = self.host_pointer(gpa, buffer.len())?;
        // Safe because the range was checked to lie in this guest's RAM,
        // which the direct map covers and which no Rust reference aliases.
        unsafe { core::ptr::copy_nonoverlapping(source, buffer.as_mut_ptr(), buffer.len()) };
        Ok(())
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let destination = self.host_pointer(gpa, data.len())?;
        // Safe for the same reasons as `read`.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), destination, data.len()) };
        Ok(())
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // The CPU may still cache translations through this EPT; they must
        // be gone before its frames and the RAM go to someone else.
        if let Err(error) = invept(InveptKind::SingleContext, self.eptp()) {
            log::error!("INVEPT for a departing guest failed ({error:?}): keeping its memory out of use");
            return;
        }
        memory::with_frames(|frames| {
            let _ = frames.free(self.host);
            for frame in self.ept_frames.drain(..) {
                let _ = frames.free(PhysRange::frame(frame));
            }
        });
    }
}
