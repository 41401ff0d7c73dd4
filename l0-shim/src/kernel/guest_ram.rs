//! A guest's RAM: one contiguous run of host frames, mapped at
//! guest-physical 0 by the guest's own EPT (EPT01), built from frames that
//! belong to that guest alone.

use alloc::string::String;

use l0_shim::layout::phys_to_virt;
use l0_shim::memory::{EptFlags, EptPaging, MapError, MemoryType, PageSize, PageTableBuilder, PhysAddr, PhysRange};

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

/// Counts the frames an EPT builder takes, so they can be freed, and
/// refuses more than `limit` of them.
pub struct TrackingFrames<'a> {
    pub frames: &'a mut l0_shim::memory::FrameAllocator,
    pub taken: &'a mut alloc::vec::Vec<PhysAddr>,
    pub limit: usize,
}

impl l0_shim::memory::FrameSource for TrackingFrames<'_> {
    fn alloc_frame(&mut self) -> Option<PhysAddr> {
        if self.taken.len() >= self.limit {
            return None;
        }
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
            let mut source = TrackingFrames { frames, taken: &mut ept_frames, limit: usize::MAX };
            let mut direct_map = DirectMap;
            let mut ept = PageTableBuilder::<EptPaging, _, _>::new(&mut direct_map, &mut source)?;
            let ram = EptFlags::READ | EptFlags::WRITE | EptFlags::EXECUTE;
            ept.map_range(0, host.start, bytes, ram.with_memory_type(MemoryType::WriteBack), PageSize::Size2M)?;
            Ok(ept.root())
        });
        match built {
            Ok(ept_root) => {
                let ram = Self { host, ept_root, ept_frames };
                // Safe because the frames are this guest's alone, fresh from
                // the allocator, and the direct map covers them.
                unsafe { core::ptr::write_bytes(phys_to_virt(host.start.as_u64()) as *mut u8, 0, bytes as usize) };
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

    /// The host frames behind the guest's RAM (guest-physical 0 first).
    pub fn host_range(&self) -> PhysRange {
        self.host
    }

    pub fn eptp(&self) -> u64 {
        self.ept_root.as_u64() | EPTP_WALK_LENGTH_4 | EPTP_WRITE_BACK
    }

    /// Copies `data` into guest RAM at `gpa` (the shim's own test guests
    /// only: a monitor loads its guest's kernel itself).
    pub fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), String> {
        let inside = gpa.checked_add(data.len() as u64).is_some_and(|end| end <= self.host.len());
        if !inside {
            return Err(alloc::format!("{} bytes at guest-physical {gpa:#x} lie outside the guest's RAM", data.len()));
        }
        memory::write_bytes(PhysAddr::new(self.host.start.as_u64() + gpa), data);
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
