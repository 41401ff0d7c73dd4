//! Kernels and ramdisks uploaded over the control API.
//!
//! An upload is copied out of the request into frames of its own, one
//! contiguous, page-aligned run, so that a monitor maps it exactly as it
//! maps a boot module (`monitor_space`: read-only, whole pages in place).
//! The frames go back to the allocator when the last holder drops it: the
//! guest defined over the API, and the running guest, which keeps its
//! images for a restart or a reset.

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

use l0_shim::layout::phys_to_virt;
use l0_shim::memory::{PhysRange, FRAME_SIZE};

use crate::kernel::memory;

/// One uploaded image in frames of its own.
pub struct Upload {
    frames: PhysRange,
    len: u64,
}

impl Upload {
    /// Copies `bytes` into fresh frames; the error says how many were
    /// missing.
    pub fn new(bytes: &[u8]) -> Result<Self, String> {
        let len = bytes.len() as u64;
        let pages = len.div_ceil(FRAME_SIZE).max(1);
        let frames = memory::with_frames(|frames| frames.alloc_contiguous(pages, FRAME_SIZE))
            .ok_or_else(|| format!("not enough free memory to hold an image of {} KiB", len.div_ceil(1024)))?;
        memory::write_bytes(frames.start, bytes);
        Ok(Self { frames, len })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// The image's frames, cut to its length (as a boot module's range).
    pub fn range(&self) -> PhysRange {
        PhysRange::new(self.frames.start.as_u64(), self.frames.start.as_u64() + self.len)
    }

    pub fn bytes(&self) -> &[u8] {
        // Safe because the frames are this upload's alone for as long as it
        // lives, the direct map covers them, and nothing writes them after
        // `new`.
        unsafe { core::slice::from_raw_parts(phys_to_virt(self.frames.start.as_u64()) as *const u8, self.len as usize) }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        memory::with_frames(|frames| {
            if let Err(error) = frames.free(self.frames) {
                log::error!("freeing an uploaded image's frames failed: {error:?}");
            }
        });
    }
}

/// A guest's uploaded images; what is `None` comes from the boot module its
/// configuration names.
#[derive(Clone, Default)]
pub struct Uploads {
    pub kernel: Option<Arc<Upload>>,
    pub initrd: Option<Arc<Upload>>,
}

impl Uploads {
    /// How the control API describes an image: uploaded, or the module.
    pub fn describe(upload: Option<&Arc<Upload>>, module: Option<&str>) -> Option<String> {
        match (upload, module) {
            (Some(upload), _) => Some(format!("uploaded, {} bytes", upload.len())),
            (None, Some(module)) => Some(format!("module {module}")),
            (None, None) => None,
        }
    }
}
