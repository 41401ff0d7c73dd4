//! Physical frame allocator.
//!
//! Free memory is kept as a sorted list of disjoint, non-adjacent ranges rather
//! than a bitmap: the big customers (guest RAM) want large, 2 MiB-aligned
//! contiguous chunks, which a range list finds in one pass, and the list stays
//! short because the firmware map has few RAM regions. The list lives on the
//! shim's heap; [`choose_region`] places that heap before it exists.

use alloc::vec::Vec;

use super::addr::{align_up, PhysAddr, PhysRange, FRAME_SIZE, LOW_MEMORY_END, MAX_PHYS_ADDR};
use super::page_table::FrameSource;

/// Why [`FrameAllocator::free`] refused a range. A refused free leaves the
/// allocator untouched.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FreeError {
    /// The range holds no byte.
    Empty,
    /// An end of the range is not frame-aligned.
    Misaligned,
    /// Part of the range was never managed by this allocator (outside usable
    /// RAM, or reserved).
    NotManaged,
    /// Part of the range is already free: a double free.
    DoubleFree,
}

/// Allocator of 4 KiB frames over the usable RAM of the machine.
///
/// Invariants: `managed` and `free` are sorted, disjoint, non-adjacent,
/// non-empty and frame-aligned, and `free` lies within `managed`.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    managed: Vec<PhysRange>,
    free: Vec<PhysRange>,
}

impl FrameAllocator {
    /// Manages the whole frames of `usable` (RAM regions from the firmware
    /// map, in any order, possibly overlapping or unaligned) minus every frame
    /// that `reserved` touches (kernel image, boot modules, boot information,
    /// heap, the first MiB). Everything managed starts out free.
    pub fn new(usable: impl IntoIterator<Item = PhysRange>, reserved: &[PhysRange]) -> Self {
        let mut managed: Vec<PhysRange> = usable
            .into_iter()
            .map(|r| PhysRange::new(r.start.0, r.end.0.min(MAX_PHYS_ADDR)).shrink_to(FRAME_SIZE))
            .filter(|r| !r.is_empty())
            .collect();
        managed.sort_unstable_by_key(|r| r.start);
        // Coalesce overlapping and adjacent regions, so that a range is managed
        // exactly when it lies inside a single entry.
        let mut merged: Vec<PhysRange> = Vec::with_capacity(managed.len());
        for r in managed {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        for hole in reserved.iter().map(|r| r.grow_to(FRAME_SIZE)) {
            // Cutting a hole keeps the list sorted and non-adjacent.
            merged = merged.iter().flat_map(|&r| minus(r, hole)).filter(|r| !r.is_empty()).collect();
        }
        Self { free: merged.clone(), managed: merged }
    }

    /// One frame, the lowest free one.
    pub fn alloc_frame(&mut self) -> Option<PhysAddr> {
        self.alloc_contiguous(1, FRAME_SIZE).map(|r| r.start)
    }

    /// `frames` contiguous frames starting at a multiple of `align` (a power of
    /// two, at least [`FRAME_SIZE`]), at the lowest address where they fit.
    /// `None` if nothing fits or the request is malformed.
    pub fn alloc_contiguous(&mut self, frames: u64, align: u64) -> Option<PhysRange> {
        if frames == 0 || !align.is_power_of_two() || align < FRAME_SIZE {
            return None;
        }
        let size = frames.checked_mul(FRAME_SIZE)?;
        // The list is sorted, so the first range with room holds the lowest fit.
        let (index, block) = self.free.iter().enumerate().find_map(|(i, r)| {
            let block = PhysRange::from_start_len(align_up(r.start.0, align)?, size)?;
            r.contains_range(block).then_some((i, block))
        })?;
        let pieces = minus(self.free[index], block);
        self.free.splice(index..=index, pieces.into_iter().filter(|r| !r.is_empty()));
        Some(block)
    }

    /// Returns `range` to the free set, merging it with free neighbours.
    /// Rejects, without changing anything, ranges that are empty, misaligned,
    /// not managed here, or already (partly) free.
    pub fn free(&mut self, range: PhysRange) -> Result<(), FreeError> {
        if range.is_empty() {
            return Err(FreeError::Empty);
        }
        if !range.is_aligned(FRAME_SIZE) {
            return Err(FreeError::Misaligned);
        }
        // Managed entries are merged, so a managed range sits inside one entry.
        let m = self.managed.partition_point(|m| m.end <= range.start);
        if !self.managed.get(m).is_some_and(|m| m.contains_range(range)) {
            return Err(FreeError::NotManaged);
        }
        // Free ranges from `first` on end at or after `range.start`; those that
        // also start at or before `range.end` touch it and merge with it.
        let first = self.free.partition_point(|r| r.end < range.start);
        let mut merged = range;
        let mut last = first;
        while let Some(&r) = self.free.get(last).filter(|r| r.start <= range.end) {
            if r.overlaps(range) {
                return Err(FreeError::DoubleFree);
            }
            merged = PhysRange::new(merged.start.0.min(r.start.0), merged.end.0.max(r.end.0));
            last += 1;
        }
        self.free.splice(first..last, [merged]);
        Ok(())
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.len()).sum()
    }

    /// Bytes under management: free plus allocated.
    pub fn managed_bytes(&self) -> u64 {
        self.managed.iter().map(|r| r.len()).sum()
    }

    /// The free ranges, sorted by address.
    pub fn free_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.free.iter().copied()
    }

    /// The managed ranges (usable minus reserved), sorted by address.
    pub fn managed_ranges(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.managed.iter().copied()
    }
}

impl FrameSource for FrameAllocator {
    fn alloc_frame(&mut self) -> Option<PhysAddr> {
        FrameAllocator::alloc_frame(self)
    }

    fn free_frame(&mut self, frame: PhysAddr) {
        // A frame this allocator did not hand out is refused without harm;
        // there is nobody to report it to.
        let _ = self.free(PhysRange::frame(frame));
    }
}

/// `range` minus `hole`: the parts below and above it (each possibly empty).
fn minus(range: PhysRange, hole: PhysRange) -> [PhysRange; 2] {
    if !range.overlaps(hole) {
        return [range, PhysRange::default()];
    }
    [PhysRange::new(range.start.0, hole.start.0), PhysRange::new(hole.end.0, range.end.0)]
}

/// Picks where to put the shim's early heap: the lowest `size` bytes, aligned
/// to `align` (a power of two), that lie inside one `usable` region, above the
/// first MiB, and overlap no `reserved` range. Runs before any heap exists, so
/// it allocates nothing. A fit spanning two adjacent `usable` regions is not
/// found; firmware maps list RAM in few, maximal regions, so that costs little.
pub fn choose_region(
    usable: impl IntoIterator<Item = PhysRange>,
    reserved: &[PhysRange],
    size: u64,
    align: u64,
) -> Option<PhysRange> {
    if size == 0 || !align.is_power_of_two() {
        return None;
    }
    usable.into_iter().filter_map(|region| lowest_fit(region, reserved, size, align)).min_by_key(|r| r.start)
}

/// The lowest aligned block of `size` bytes in `region` above the first MiB
/// that avoids `reserved`.
fn lowest_fit(region: PhysRange, reserved: &[PhysRange], size: u64, align: u64) -> Option<PhysRange> {
    let limit = region.end.0.min(MAX_PHYS_ADDR);
    let mut start = align_up(region.start.0.max(LOW_MEMORY_END), align)?;
    loop {
        let block = PhysRange::from_start_len(start, size)?;
        if block.end.0 > limit {
            return None;
        }
        // Jump past every reserved range in the way. Each jump passes the end of
        // a reserved range for good, so this loops at most `reserved.len()` times.
        match reserved.iter().filter(|r| r.overlaps(block)).map(|r| r.end.0).max() {
            None => return Some(block),
            Some(end) => start = align_up(end, align)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    fn ranges(alloc: &FrameAllocator) -> Vec<PhysRange> {
        alloc.free_ranges().collect()
    }

    #[test]
    fn new_normalises_the_firmware_map() {
        let usable = [
            PhysRange::new(0x30_0800, 0x40_0000), // unaligned start
            PhysRange::new(0x10_0000, 0x20_0000),
            PhysRange::new(0x18_0000, 0x28_0000), // overlaps the previous one
            PhysRange::new(0x28_0000, 0x2f_f000), // adjacent to it
            PhysRange::new(0x50_0100, 0x50_0f00), // no whole frame
        ];
        let reserved = [PhysRange::new(0x1f_f800, 0x20_0800), PhysRange::new(0x3f_f000, 0x50_0000)];
        let alloc = FrameAllocator::new(usable, &reserved);
        let expected = [
            PhysRange::new(0x10_0000, 0x1f_f000),
            PhysRange::new(0x20_1000, 0x2f_f000),
            PhysRange::new(0x30_1000, 0x3f_f000),
        ];
        assert_eq!(ranges(&alloc), expected);
        assert_eq!(alloc.managed_ranges().collect::<Vec<_>>(), expected);
        assert_eq!(alloc.free_bytes(), alloc.managed_bytes());
    }

    #[test]
    fn usable_memory_above_the_physical_limit_is_clipped() {
        let alloc = FrameAllocator::new([PhysRange::new(MAX_PHYS_ADDR - 0x2000, u64::MAX)], &[]);
        assert_eq!(ranges(&alloc), [PhysRange::new(MAX_PHYS_ADDR - 0x2000, MAX_PHYS_ADDR)]);
    }

    #[test]
    fn alloc_frame_takes_the_lowest_frame_until_exhausted() {
        let mut alloc = FrameAllocator::new([PhysRange::new(0x5000, 0x7000), PhysRange::new(0x1000, 0x2000)], &[]);
        assert_eq!(alloc.alloc_frame(), Some(PhysAddr(0x1000)));
        assert_eq!(alloc.alloc_frame(), Some(PhysAddr(0x5000)));
        assert_eq!(alloc.alloc_frame(), Some(PhysAddr(0x6000)));
        assert_eq!(alloc.alloc_frame(), None);
        assert_eq!(alloc.free_bytes(), 0);
        assert_eq!(alloc.managed_bytes(), 0x3000);
    }

    #[test]
    fn alloc_contiguous_honours_alignment_and_splits_the_range() {
        let mut alloc = FrameAllocator::new([PhysRange::new(0x10_1000, 0x80_0000)], &[]);
        let block = alloc.alloc_contiguous(512, 2 * MIB).unwrap();
        assert_eq!(block, PhysRange::new(0x20_0000, 0x40_0000));
        assert_eq!(ranges(&alloc), [PhysRange::new(0x10_1000, 0x20_0000), PhysRange::new(0x40_0000, 0x80_0000)]);
        // Too big for any range, and malformed requests.
        assert_eq!(alloc.alloc_contiguous(0x800, FRAME_SIZE), None);
        assert_eq!(alloc.alloc_contiguous(0, FRAME_SIZE), None);
        assert_eq!(alloc.alloc_contiguous(1, 0x3000), None);
        assert_eq!(alloc.alloc_contiguous(1, 0x800), None);
        assert_eq!(alloc.alloc_contiguous(u64::MAX, FRAME_SIZE), None);
        assert_eq!(alloc.alloc_contiguous(1, 1 << 63), None);
        // Exactly the rest of a range.
        assert_eq!(alloc.alloc_contiguous(0x400, FRAME_SIZE), Some(PhysRange::new(0x40_0000, 0x80_0000)));
        assert_eq!(ranges(&alloc), [PhysRange::new(0x10_1000, 0x20_0000)]);
    }

    #[test]
    fn free_merges_with_both_neighbours() {
        let mut alloc = FrameAllocator::new([PhysRange::new(0x1000, 0x10000)], &[]);
        let a = alloc.alloc_contiguous(2, FRAME_SIZE).unwrap();
        let b = alloc.alloc_contiguous(2, FRAME_SIZE).unwrap();
        let c = alloc.alloc_contiguous(2, FRAME_SIZE).unwrap();
        alloc.free(a).unwrap();
        assert_eq!(ranges(&alloc), [a, PhysRange::new(c.end.0, 0x10000)]);
        alloc.free(c).unwrap(); // merges right
        assert_eq!(ranges(&alloc), [a, PhysRange::new(c.start.0, 0x10000)]);
        alloc.free(b).unwrap(); // merges both sides
        assert_eq!(ranges(&alloc), [PhysRange::new(0x1000, 0x10000)]);
    }

    #[test]
    fn bad_frees_are_rejected_without_damage() {
        let reserved = [PhysRange::new(0x8000, 0x9000)];
        let mut alloc =
            FrameAllocator::new([PhysRange::new(0x1000, 0x10000), PhysRange::new(0x20000, 0x30000)], &reserved);
        let block = alloc.alloc_contiguous(4, FRAME_SIZE).unwrap();
        let before = ranges(&alloc);
        let attempts = [
            (PhysRange::new(0x2000, 0x2000), FreeError::Empty),
            (PhysRange::new(0x2000, 0x1000), FreeError::Empty),
            (PhysRange::new(0x1800, 0x2800), FreeError::Misaligned),
            (PhysRange::new(0x8000, 0x9000), FreeError::NotManaged), // reserved
            (PhysRange::new(0x0, 0x1000), FreeError::NotManaged),    // outside usable
            (PhysRange::new(0xf000, 0x21000), FreeError::NotManaged), // spans a gap
            (PhysRange::new(0x5000, 0x6000), FreeError::DoubleFree), // free already
            (PhysRange::new(0x4000, 0x6000), FreeError::DoubleFree), // partly free
        ];
        for (range, error) in attempts {
            assert_eq!(alloc.free(range), Err(error), "{range:?}");
            assert_eq!(ranges(&alloc), before);
        }
        alloc.free(block).unwrap();
        assert_eq!(alloc.free(block), Err(FreeError::DoubleFree));
        assert_eq!(alloc.free_bytes(), alloc.managed_bytes());
    }

    #[test]
    fn frame_source_gives_frames_back() {
        let mut alloc = FrameAllocator::new([PhysRange::new(0x1000, 0x3000)], &[]);
        let frame = FrameSource::alloc_frame(&mut alloc).unwrap();
        FrameSource::free_frame(&mut alloc, frame);
        FrameSource::free_frame(&mut alloc, frame); // ignored double free
        assert_eq!(ranges(&alloc), [PhysRange::new(0x1000, 0x3000)]);
    }

    #[test]
    fn choose_region_avoids_low_memory_and_reserved_ranges() {
        let usable = [PhysRange::new(0x1000, 0x9f000), PhysRange::new(0x10_0000, 0x100_0000)];
        let reserved = [PhysRange::new(0x10_0000, 0x23_4567), PhysRange::new(0x40_0000, 0x40_1000)];
        // Low memory is skipped even though it is usable, then the kernel image.
        assert_eq!(choose_region(usable, &reserved, 0x1000, 0x1000), Some(PhysRange::new(0x23_5000, 0x23_6000)));
        // 2 MiB alignment, and a block that would hit the second reserved range.
        assert_eq!(choose_region(usable, &reserved, 0x20_0000, 0x20_0000), Some(PhysRange::new(0x60_0000, 0x80_0000)));
        // Unsorted map: the lowest fit wins.
        let unsorted = [PhysRange::new(0x200_0000, 0x300_0000), PhysRange::new(0x10_0000, 0x20_0000)];
        assert_eq!(choose_region(unsorted, &[], 0x1000, 0x1000), Some(PhysRange::new(0x10_0000, 0x10_1000)));
        // Nothing fits, or the request is malformed.
        assert_eq!(choose_region(usable, &reserved, 0x100_0000, 0x1000), None);
        assert_eq!(choose_region(usable, &reserved, 0, 0x1000), None);
        assert_eq!(choose_region(usable, &reserved, 0x1000, 0x1800), None);
        assert_eq!(choose_region([PhysRange::new(0x10_0000, u64::MAX)], &[], u64::MAX, 1), None);
        assert_eq!(choose_region([PhysRange::new(u64::MAX - 0x1000, u64::MAX)], &[], 0x10, 1 << 63), None);
    }

    // ---- Property test against a frame-by-frame model ----

    /// The model's world: 32 MiB, small enough for a `Vec<bool>` of frames.
    const WORLD: u64 = 32 * MIB;
    const WORLD_FRAMES: usize = (WORLD / FRAME_SIZE) as usize;

    #[derive(Clone, Debug)]
    enum Op {
        Alloc,
        AllocContiguous { frames: u64, align_shift: u32 },
        Free(usize),
        DoubleFree(usize),
        FreeArbitrary(u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Alloc),
            3 => (1u64..600, 12u32..23).prop_map(|(frames, align_shift)| Op::AllocContiguous { frames, align_shift }),
            3 => any::<usize>().prop_map(Op::Free),
            1 => any::<usize>().prop_map(Op::DoubleFree),
            1 => (0..WORLD, 0..(WORLD / 4)).prop_map(|(s, l)| Op::FreeArbitrary(s, l)),
        ]
    }

    fn region() -> impl Strategy<Value = PhysRange> {
        (0..WORLD, 0..(WORLD / 3)).prop_map(|(start, len)| PhysRange::new(start, (start + len).min(WORLD)))
    }

    fn frames_of(r: PhysRange) -> core::ops::Range<usize> {
        (r.start.0 / FRAME_SIZE) as usize..(r.end.0 / FRAME_SIZE) as usize
    }

    /// Lowest-fit allocation on the model: `free[i]` tells whether frame i is free.
    fn model_alloc(free: &[bool], frames: u64, align: u64) -> Option<PhysRange> {
        let step = (align / FRAME_SIZE) as usize;
        (0..WORLD_FRAMES)
            .step_by(step)
            .find(|&f| f + frames as usize <= WORLD_FRAMES && free[f..f + frames as usize].iter().all(|&x| x))
            .map(|f| PhysRange::from_start_len(f as u64 * FRAME_SIZE, frames * FRAME_SIZE).unwrap())
    }

    fn check_invariants(alloc: &FrameAllocator, model_free: &[bool], managed: &[bool]) {
        for list in [&alloc.free, &alloc.managed] {
            for w in list.windows(2) {
                assert!(w[0].end < w[1].start, "unsorted or unmerged: {list:?}");
            }
            assert!(list.iter().all(|r| !r.is_empty() && r.is_aligned(FRAME_SIZE)));
        }
        let mut actual = vec![false; WORLD_FRAMES];
        for r in &alloc.free {
            actual[frames_of(*r)].fill(true);
        }
        assert_eq!(actual, model_free);
        assert!(model_free.iter().zip(managed).all(|(&f, &m)| !f || m), "free memory outside the managed set");
        let managed_frames = managed.iter().filter(|&&m| m).count() as u64;
        assert_eq!(alloc.managed_bytes(), managed_frames * FRAME_SIZE);
    }

    proptest! {
        #[test]
        fn random_operations_keep_the_allocator_consistent(
            usable in prop::collection::vec(region(), 1..6),
            reserved in prop::collection::vec(region().prop_map(|r| PhysRange::new(r.start.0, r.start.0 + r.len() / 8)), 0..5),
            ops in prop::collection::vec(op(), 1..60),
        ) {
            let mut alloc = FrameAllocator::new(usable.iter().copied(), &reserved);
            // Managed frames: wholly inside a usable region, touching no reserved range.
            let managed: Vec<bool> = (0..WORLD_FRAMES as u64)
                .map(|f| PhysRange::from_start_len(f * FRAME_SIZE, FRAME_SIZE).unwrap())
                .map(|fr| usable.iter().any(|u| u.contains_range(fr)) && !reserved.iter().any(|r| r.overlaps(fr)))
                .collect();
            let mut model_free = managed.clone();
            let mut live: Vec<PhysRange> = Vec::new();
            let mut freed: Vec<PhysRange> = Vec::new();
            check_invariants(&alloc, &model_free, &managed);
            for op in ops {
                match op {
                    Op::Alloc | Op::AllocContiguous { .. } => {
                        let (frames, align) = match op {
                            Op::AllocContiguous { frames, align_shift } => (frames, 1 << align_shift),
                            _ => (1, FRAME_SIZE),
                        };
                        let got = match op {
                            Op::Alloc => alloc.alloc_frame().map(PhysRange::frame),
                            _ => alloc.alloc_contiguous(frames, align),
                        };
                        prop_assert_eq!(got, model_alloc(&model_free, frames, align));
                        if let Some(r) = got {
                            prop_assert!(r.start.is_aligned(align) && r.len() == frames * FRAME_SIZE);
                            prop_assert!(!live.iter().any(|l| l.overlaps(r)));
                            prop_assert!(managed[frames_of(r)].iter().all(|&m| m), "outside usable or inside reserved");
                            model_free[frames_of(r)].fill(false);
                            live.push(r);
                        }
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let r = live.swap_remove(i % live.len());
                        prop_assert_eq!(alloc.free(r), Ok(()));
                        model_free[frames_of(r)].fill(true);
                        freed.push(r);
                    }
                    Op::DoubleFree(i) if !freed.is_empty() => {
                        let r = freed[i % freed.len()];
                        // Still (at least partly) free unless re-allocated since.
                        if model_free[frames_of(r)].iter().any(|&f| f) {
                            prop_assert_eq!(alloc.free(r), Err(FreeError::DoubleFree));
                        }
                    }
                    Op::FreeArbitrary(start, len) => {
                        // A random range is accepted only if it is exactly a set of allocated frames.
                        let r = PhysRange::from_start_len(start, len).unwrap();
                        let ok = !r.is_empty() && r.is_aligned(FRAME_SIZE)
                            && frames_of(r).all(|f| managed[f] && !model_free[f]);
                        prop_assert_eq!(alloc.free(r).is_ok(), ok);
                        if ok {
                            model_free[frames_of(r)].fill(true);
                            // Those frames may belong to live allocations: keep only the rest of them.
                            live = live.iter().flat_map(|&l| minus(l, r)).filter(|l| !l.is_empty()).collect();
                        }
                    }
                    _ => {}
                }
                check_invariants(&alloc, &model_free, &managed);
                let allocated: u64 = live.iter().map(|r| r.len()).sum();
                prop_assert_eq!(alloc.free_bytes() + allocated, alloc.managed_bytes());
            }
        }
    }
}
