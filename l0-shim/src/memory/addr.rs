//! Physical addresses, physical ranges and page sizes.

use core::fmt;

/// Size of a physical frame, the smallest unit the shim hands out.
pub const FRAME_SIZE: u64 = 4096;

/// First address above the architectural physical-address limit. x86-64 caps
/// MAXPHYADDR at 52 bits (SDM 4.1.4), and paging-structure entries keep flag
/// bits above bit 51, so a larger address would silently turn into flags.
pub const MAX_PHYS_ADDR: u64 = 1 << 52;

/// End of the first MiB: real-mode IVT, BIOS data area, EBDA, VGA memory and
/// option ROMs live there, and the firmware map is not always honest about it.
pub const LOW_MEMORY_END: u64 = 0x10_0000;

/// Rounds `value` down to a multiple of `align` (treated as 1 when zero).
pub const fn align_down(value: u64, align: u64) -> u64 {
    let align = if align == 0 { 1 } else { align };
    value - value % align
}

/// Rounds `value` up to a multiple of `align` (treated as 1 when zero);
/// `None` when the result does not fit in a `u64`.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    let align = if align == 0 { 1 } else { align };
    match value % align {
        0 => Some(value),
        rem => value.checked_add(align - rem),
    }
}

/// A physical address. Only a number: nothing is checked on construction, so
/// that values read from firmware or guests can be carried around and rejected
/// where they are used.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

impl PhysAddr {
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whether the address is a multiple of `align` (a zero `align` counts as 1).
    pub const fn is_aligned(self, align: u64) -> bool {
        align_down(self.0, align) == self.0
    }

    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(addr) => Some(Self(addr)),
            None => None,
        }
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl From<x86_64::PhysAddr> for PhysAddr {
    fn from(addr: x86_64::PhysAddr) -> Self {
        Self(addr.as_u64())
    }
}

/// A half-open physical range `[start, end)`. A range with `end <= start` is
/// empty; every helper treats it so instead of trusting the fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PhysRange {
    pub start: PhysAddr,
    pub end: PhysAddr,
}

impl PhysRange {
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start: PhysAddr(start), end: PhysAddr(end) }
    }

    /// `[start, start + len)`, or `None` if it would wrap around.
    pub const fn from_start_len(start: u64, len: u64) -> Option<Self> {
        match start.checked_add(len) {
            Some(end) => Some(Self::new(start, end)),
            None => None,
        }
    }

    /// The frame starting at `frame` (which should be frame-aligned).
    pub const fn frame(frame: PhysAddr) -> Self {
        Self::new(frame.0, frame.0.saturating_add(FRAME_SIZE))
    }

    pub const fn len(self) -> u64 {
        self.end.0.saturating_sub(self.start.0)
    }

    pub const fn is_empty(self) -> bool {
        self.end.0 <= self.start.0
    }

    pub const fn contains(self, addr: PhysAddr) -> bool {
        self.start.0 <= addr.0 && addr.0 < self.end.0
    }

    /// Whether every byte of `other` lies in `self` (trivially true when
    /// `other` is empty).
    pub const fn contains_range(self, other: Self) -> bool {
        other.is_empty() || (self.start.0 <= other.start.0 && other.end.0 <= self.end.0)
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(self, other: Self) -> bool {
        !self.is_empty() && !other.is_empty() && self.start.0 < other.end.0 && other.start.0 < self.end.0
    }

    /// Whether both ends are multiples of `align`.
    pub const fn is_aligned(self, align: u64) -> bool {
        self.start.is_aligned(align) && self.end.is_aligned(align)
    }

    /// The largest sub-range whose ends are multiples of `align` (possibly
    /// empty): how much of a firmware RAM region can be used in whole frames.
    pub const fn shrink_to(self, align: u64) -> Self {
        match align_up(self.start.0, align) {
            Some(start) => Self::new(start, align_down(self.end.0, align)),
            None => Self::new(0, 0),
        }
    }

    /// The smallest range with ends multiple of `align` that covers `self`
    /// (the end saturates at the top of the address space): every frame a
    /// reserved region touches.
    pub const fn grow_to(self, align: u64) -> Self {
        let end = match align_up(self.end.0, align) {
            Some(end) => end,
            None => u64::MAX,
        };
        Self::new(align_down(self.start.0, align), end)
    }
}

impl fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start.0, self.end.0)
    }
}

/// The page sizes of 4-level x86-64 paging and EPT. Ordered by size.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    /// Largest first, the order in which a range is carved into pages.
    pub const DESCENDING: [PageSize; 3] = [PageSize::Size1G, PageSize::Size2M, PageSize::Size4K];

    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The level of the paging structure whose entries map pages of this
    /// size: 1 = page table, 2 = page directory, 3 = PDPT (PML4 is 4).
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }

    /// Inverse of [`PageSize::level`].
    pub const fn from_level(level: u8) -> Option<Self> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(0x1fff, 0x1000), 0x1000);
        assert_eq!(align_up(0x1001, 0x1000), Some(0x2000));
        assert_eq!(align_up(0x1000, 0x1000), Some(0x1000));
        assert_eq!(align_up(u64::MAX, 0x1000), None);
        assert_eq!(align_up(5, 0), Some(5));
        assert!(PhysAddr(0x20_0000).is_aligned(0x20_0000));
        assert!(!PhysAddr(0x1000).is_aligned(0x2000));
    }

    #[test]
    fn range_helpers() {
        let r = PhysRange::new(0x1800, 0x5800);
        assert_eq!(r.shrink_to(FRAME_SIZE), PhysRange::new(0x2000, 0x5000));
        assert_eq!(r.grow_to(FRAME_SIZE), PhysRange::new(0x1000, 0x6000));
        assert!(PhysRange::new(0x1800, 0x1900).shrink_to(FRAME_SIZE).is_empty());
        assert_eq!(PhysRange::new(0, u64::MAX).grow_to(FRAME_SIZE).end.0, u64::MAX);
        assert!(r.contains(PhysAddr(0x1800)) && !r.contains(PhysAddr(0x5800)));
        assert!(r.overlaps(PhysRange::new(0x5000, 0x9000)));
        assert!(!r.overlaps(PhysRange::new(0x5800, 0x9000)));
        assert!(!r.overlaps(PhysRange::new(0x2000, 0x2000)));
        assert!(r.contains_range(PhysRange::new(0x2000, 0x3000)));
        assert!(!r.contains_range(PhysRange::new(0x2000, 0x6000)));
        let inverted = PhysRange::new(0x9000, 0x1000);
        assert!(inverted.is_empty());
        assert_eq!(inverted.len(), 0);
        assert_eq!(PhysRange::from_start_len(u64::MAX, 2), None);
    }

    #[test]
    fn page_sizes() {
        for size in PageSize::DESCENDING {
            assert_eq!(PageSize::from_level(size.level()), Some(size));
        }
        assert_eq!(PageSize::from_level(4), None);
        assert!(PageSize::Size4K < PageSize::Size2M && PageSize::Size2M < PageSize::Size1G);
    }
}
