//! A monitor's address space: its own page tables, built from the layout in
//! `monitor_abi::address_space`.
//!
//! The lower half holds only what this monitor may touch, all of it user
//! pages: a private copy of the image (code R+X, data RW NX), a stack with
//! an unmapped guard page below it, a heap, the message page, its guest's
//! RAM, the boot information and its guest's boot modules (read-only). The
//! upper half is the shim's own, shared by copying the shim's top-level
//! entries, which are supervisor-only: a monitor cannot reach the shim, nor
//! any frame of another guest.

use alloc::vec::Vec;
use core::fmt;

use monitor_abi::address_space::{
    BOOT_INFO_BASE, BOOT_INFO_MAX_BYTES, GUEST_RAM_BASE, GUEST_RAM_LIMIT, HEAP_BASE, MESSAGE_PAGE, MODULES_BASE,
    STACK_BYTES, STACK_TOP,
};

use crate::memory::{
    FrameSource, MapError, PageSize, PageTableBuilder, PhysAddr, PhysMemory, PhysRange, X86Flags, X86Paging, FRAME_SIZE,
};
use crate::monitor_image::MonitorImage;

/// Byte access to frames, beyond the page-table words.
pub trait FrameContents: PhysMemory {
    fn write_bytes(&mut self, at: PhysAddr, bytes: &[u8]);
    fn zero_frame(&mut self, frame: PhysAddr);
}

/// What goes into one monitor's address space.
pub struct SpaceRequest<'a> {
    pub image: &'a MonitorImage<'a>,
    pub heap_bytes: u64,
    /// The guest's RAM: host frames, guest-physical 0 first.
    pub guest_ram: PhysRange,
    /// The guest's boot modules, in the order of `module_addresses`.
    pub modules: &'a [(PhysRange, &'a [u8])],
    /// Encoded boot information (it names the modules' addresses).
    pub boot_info: &'a [u8],
    /// The shim's own top-level table, whose upper half is shared.
    pub shim_root: PhysAddr,
}

/// A built address space and the frames it owns.
#[derive(Debug)]
pub struct MonitorSpace {
    pub root: PhysAddr,
    pub entry: u64,
    pub message_page: PhysAddr,
    /// Every frame allocated for it (tables, image copy, stack, heap, ...),
    /// to be freed when the monitor goes. Guest RAM and modules are not
    /// among them: they belong to the guest and the boot loader.
    pub owned_frames: Vec<PhysAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpaceError {
    OutOfFrames,
    GuestRamTooLarge(u64),
    BootInfoTooLarge(usize),
    Map(MapError),
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfFrames => write!(f, "out of memory for the monitor's address space"),
            Self::GuestRamTooLarge(bytes) => write!(f, "{bytes} bytes of guest RAM exceed the monitor's window"),
            Self::BootInfoTooLarge(bytes) => write!(f, "{bytes} bytes of boot information exceed its window"),
            Self::Map(error) => write!(f, "mapping the monitor's address space: {error:?}"),
        }
    }
}

impl From<MapError> for SpaceError {
    fn from(error: MapError) -> Self {
        match error {
            MapError::OutOfFrames => Self::OutOfFrames,
            other => Self::Map(other),
        }
    }
}

/// Where each module appears, given their lengths: one after another from
/// `MODULES_BASE`, each on its own pages.
pub fn module_addresses(lengths: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut next = MODULES_BASE;
    lengths
        .into_iter()
        .map(|length| {
            let address = next;
            next += length.max(1).next_multiple_of(FRAME_SIZE);
            address
        })
        .collect()
}

/// Counts every frame taken, so all can be given back.
struct Tracking<'a, A: FrameSource> {
    frames: &'a mut A,
    taken: &'a mut Vec<PhysAddr>,
}

impl<A: FrameSource> FrameSource for Tracking<'_, A> {
    fn alloc_frame(&mut self) -> Option<PhysAddr> {
        let frame = self.frames.alloc_frame()?;
        self.taken.push(frame);
        Some(frame)
    }

    fn free_frame(&mut self, frame: PhysAddr) {
        self.taken.retain(|&taken| taken != frame);
        self.frames.free_frame(frame);
    }
}

const USER_DATA: X86Flags = X86Flags::USER.union(X86Flags::WRITABLE).union(X86Flags::NO_EXECUTE);
const USER_READ_ONLY: X86Flags = X86Flags::USER.union(X86Flags::NO_EXECUTE);
/// Entries of the top-level table that map the upper half.
const UPPER_HALF: core::ops::Range<u64> = 256..512;

/// Builds a monitor's address space. On failure every frame taken is
/// given back and nothing else changed.
pub fn build<M: FrameContents, A: FrameSource>(
    memory: &mut M,
    frames: &mut A,
    request: &SpaceRequest,
) -> Result<MonitorSpace, SpaceError> {
    if request.guest_ram.len() > GUEST_RAM_LIMIT {
        return Err(SpaceError::GuestRamTooLarge(request.guest_ram.len()));
    }
    if request.boot_info.len() > BOOT_INFO_MAX_BYTES {
        return Err(SpaceError::BootInfoTooLarge(request.boot_info.len()));
    }
    let mut taken = Vec::new();
    let result = build_tracked(memory, &mut Tracking { frames, taken: &mut taken }, request);
    match result {
        Ok((root, message_page)) => {
            Ok(MonitorSpace { root, entry: request.image.entry, message_page, owned_frames: taken })
        }
        Err(error) => {
            for frame in taken {
                frames.free_frame(frame);
            }
            Err(error)
        }
    }
}

fn build_tracked<M: FrameContents, A: FrameSource>(
    memory: &mut M,
    frames: &mut Tracking<A>,
    request: &SpaceRequest,
) -> Result<(PhysAddr, PhysAddr), SpaceError> {
    // Data frames first: the builder borrows memory and frames for good.
    let mut pages: Vec<(u64, PhysAddr, X86Flags)> = Vec::new();
    let fresh = |memory: &mut M, frames: &mut Tracking<A>| -> Result<PhysAddr, SpaceError> {
        let frame = frames.alloc_frame().ok_or(SpaceError::OutOfFrames)?;
        memory.zero_frame(frame);
        Ok(frame)
    };
    for segment in &request.image.segments {
        let flags = match (segment.writable, segment.executable) {
            (true, _) => USER_DATA,
            (false, true) => X86Flags::USER,
            (false, false) => USER_READ_ONLY,
        };
        let mut offset = 0;
        while offset < segment.memory_bytes {
            let frame = fresh(memory, frames)?;
            let start = offset as usize;
            if start < segment.file_bytes.len() {
                let end = (start + FRAME_SIZE as usize).min(segment.file_bytes.len());
                memory.write_bytes(frame, &segment.file_bytes[start..end]);
            }
            pages.push((segment.virt + offset, frame, flags));
            offset += FRAME_SIZE;
        }
    }
    for page in 0..STACK_BYTES / FRAME_SIZE {
        pages.push((STACK_TOP - STACK_BYTES + page * FRAME_SIZE, fresh(memory, frames)?, USER_DATA));
    }
    for page in 0..request.heap_bytes.div_ceil(FRAME_SIZE) {
        pages.push((HEAP_BASE + page * FRAME_SIZE, fresh(memory, frames)?, USER_DATA));
    }
    let message_page = fresh(memory, frames)?;
    pages.push((MESSAGE_PAGE, message_page, USER_DATA));
    for (index, chunk) in request.boot_info.chunks(FRAME_SIZE as usize).enumerate() {
        let frame = fresh(memory, frames)?;
        memory.write_bytes(frame, chunk);
        pages.push((BOOT_INFO_BASE + index as u64 * FRAME_SIZE, frame, USER_READ_ONLY));
    }
    // Modules: their whole pages in place; a partial last page is copied,
    // so that the monitor never sees the bytes that follow a module.
    let addresses = module_addresses(request.modules.iter().map(|(range, _)| range.len()));
    let mut module_ranges: Vec<(u64, PhysAddr, u64)> = Vec::new();
    for ((range, bytes), address) in request.modules.iter().zip(addresses) {
        let whole = range.len() / FRAME_SIZE * FRAME_SIZE;
        if range.start.as_u64() % FRAME_SIZE == 0 {
            if whole > 0 {
                module_ranges.push((address, range.start, whole));
            }
            if whole < range.len() {
                let frame = fresh(memory, frames)?;
                memory.write_bytes(frame, &bytes[whole as usize..]);
                pages.push((address + whole, frame, USER_READ_ONLY));
            }
        } else {
            // Not page-aligned (GRUB aligns them; other loaders may not):
            // copy it whole.
            for (index, chunk) in bytes.chunks(FRAME_SIZE as usize).enumerate() {
                let frame = fresh(memory, frames)?;
                memory.write_bytes(frame, chunk);
                pages.push((address + index as u64 * FRAME_SIZE, frame, USER_READ_ONLY));
            }
        }
    }

    let mut tables = PageTableBuilder::<X86Paging, _, _>::new(memory, frames)?;
    for (virt, frame, flags) in pages {
        tables.map(virt, frame, PageSize::Size4K, flags)?;
    }
    for (virt, phys, len) in module_ranges {
        tables.map_range(virt, phys, len, USER_READ_ONLY, PageSize::Size2M)?;
    }
    let ram = request.guest_ram;
    tables.map_range(GUEST_RAM_BASE, ram.start, ram.len(), USER_DATA, PageSize::Size2M)?;
    let root = tables.root();
    // The builder's borrow of `memory` ends here.
    for index in UPPER_HALF {
        let entry = memory.read_u64(PhysAddr::new(request.shim_root.as_u64() + index * 8));
        memory.write_u64(PhysAddr::new(root.as_u64() + index * 8), entry);
    }
    Ok((root, message_page))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{page_table::translate, FrameAllocator, Translation};
    use crate::monitor_image::{parse, tests::sample};
    use monitor_abi::address_space::{IMAGE_BASE, USER_LIMIT};
    use std::collections::HashMap;
    use std::vec;

    /// Sparse fake RAM: words and bytes.
    #[derive(Default)]
    struct FakeRam {
        bytes: HashMap<u64, u8>,
    }

    impl PhysMemory for FakeRam {
        fn read_u64(&self, addr: PhysAddr) -> u64 {
            let mut word = [0u8; 8];
            for (offset, byte) in word.iter_mut().enumerate() {
                *byte = self.bytes.get(&(addr.as_u64() + offset as u64)).copied().unwrap_or(0);
            }
            u64::from_le_bytes(word)
        }

        fn write_u64(&mut self, addr: PhysAddr, value: u64) {
            self.write_bytes(addr, &value.to_le_bytes());
        }
    }

    impl FrameContents for FakeRam {
        fn write_bytes(&mut self, at: PhysAddr, bytes: &[u8]) {
            for (offset, &byte) in bytes.iter().enumerate() {
                self.bytes.insert(at.as_u64() + offset as u64, byte);
            }
        }

        fn zero_frame(&mut self, frame: PhysAddr) {
            self.bytes.retain(|&addr, _| addr / FRAME_SIZE != frame.as_u64() / FRAME_SIZE);
        }
    }

    const MIB: u64 = 1 << 20;
    const SHIM_ROOT: u64 = 0x1000;
    const RAM: PhysRange = PhysRange { start: PhysAddr(0x4000_0000), end: PhysAddr(0x4000_0000 + 4 * MIB) };
    const KERNEL: PhysRange = PhysRange { start: PhysAddr(0x3000_0000), end: PhysAddr(0x3000_2010) };

    fn setup() -> (FakeRam, FrameAllocator) {
        let mut ram = FakeRam::default();
        // The shim's upper half: two recognisable supervisor entries.
        ram.write_u64(PhysAddr(SHIM_ROOT + 256 * 8), 0xaaaa_0003);
        ram.write_u64(PhysAddr(SHIM_ROOT + 511 * 8), 0xbbbb_0003);
        (ram, FrameAllocator::new([PhysRange::new(0x10_0000, 0x10_0000 + 8 * MIB)], &[]))
    }

    fn build_sample(ram: &mut FakeRam, frames: &mut FrameAllocator, kernel: &[u8]) -> Result<MonitorSpace, SpaceError> {
        let file = sample();
        let image = parse(&file).unwrap();
        let modules = [(KERNEL, kernel)];
        let request = SpaceRequest {
            image: &image,
            heap_bytes: 64 << 10,
            guest_ram: RAM,
            modules: &modules,
            boot_info: b"MTBI boot information",
            shim_root: PhysAddr(SHIM_ROOT),
        };
        build(ram, frames, &request)
    }

    fn walk(ram: &FakeRam, space: &MonitorSpace, virt: u64) -> Option<Translation<X86Flags>> {
        translate::<X86Paging, _>(ram, space.root, virt)
    }

    fn read(ram: &FakeRam, phys: PhysAddr, len: usize) -> Vec<u8> {
        (0..len).map(|offset| ram.bytes.get(&(phys.as_u64() + offset as u64)).copied().unwrap_or(0)).collect()
    }

    #[test]
    fn maps_each_region_with_its_rights() {
        let (mut ram, mut frames) = setup();
        let kernel = vec![0x5a; KERNEL.len() as usize];
        let space = build_sample(&mut ram, &mut frames, &kernel).unwrap();
        assert_eq!(space.entry, IMAGE_BASE + 0x10);

        let code = walk(&ram, &space, IMAGE_BASE + 0x1000).unwrap();
        assert_eq!(code.flags & (X86Flags::USER | X86Flags::WRITABLE | X86Flags::NO_EXECUTE), X86Flags::USER);
        assert_eq!(read(&ram, code.phys, 4), vec![0x90; 4], "a private copy of the code");
        let rodata = walk(&ram, &space, IMAGE_BASE + 0x2000).unwrap();
        assert_eq!(rodata.flags & (X86Flags::WRITABLE | X86Flags::NO_EXECUTE), X86Flags::NO_EXECUTE);
        assert_eq!(read(&ram, rodata.phys, 4), vec![1, 2, 3, 0]);
        let bss = walk(&ram, &space, IMAGE_BASE + 0x5000).unwrap();
        assert!(bss.flags.contains(USER_DATA));
        assert_eq!(read(&ram, bss.phys, 8), vec![0; 8], "bss is zero");

        assert!(walk(&ram, &space, STACK_TOP - 8).unwrap().flags.contains(USER_DATA));
        assert!(walk(&ram, &space, STACK_TOP - STACK_BYTES).is_some());
        assert!(walk(&ram, &space, STACK_TOP - STACK_BYTES - 1).is_none(), "the guard page is unmapped");
        assert!(walk(&ram, &space, STACK_TOP).is_none());
        assert!(walk(&ram, &space, HEAP_BASE + (64 << 10) - 1).unwrap().flags.contains(USER_DATA));
        assert!(walk(&ram, &space, HEAP_BASE + (64 << 10)).is_none());
        let message = walk(&ram, &space, MESSAGE_PAGE).unwrap();
        assert_eq!(message.phys, space.message_page);
        assert!(message.flags.contains(USER_DATA));

        let guest = walk(&ram, &space, GUEST_RAM_BASE + 0x12345).unwrap();
        assert_eq!(guest.phys, PhysAddr(RAM.start.as_u64() + 0x12345));
        assert!(guest.flags.contains(USER_DATA));
        assert!(walk(&ram, &space, GUEST_RAM_BASE + RAM.len()).is_none(), "not one byte past the guest's RAM");

        let info = walk(&ram, &space, BOOT_INFO_BASE).unwrap();
        assert_eq!(info.flags & (X86Flags::WRITABLE | X86Flags::USER), X86Flags::USER);
        assert_eq!(read(&ram, info.phys, 4), b"MTBI".to_vec());

        let module = walk(&ram, &space, MODULES_BASE + 0x1000).unwrap();
        assert_eq!(module.phys, PhysAddr(KERNEL.start.as_u64() + 0x1000), "whole pages are mapped in place");
        assert_eq!(module.flags & (X86Flags::WRITABLE | X86Flags::USER), X86Flags::USER);
        let tail = walk(&ram, &space, MODULES_BASE + 0x2000).unwrap();
        assert_ne!(tail.page_phys(), PhysAddr(KERNEL.start.as_u64() + 0x2000), "the partial page is a copy");
        assert_eq!(read(&ram, tail.phys, 0x11), [vec![0x5a; 0x10], vec![0]].concat());

        // The shim's half is shared as it is; nothing else is in the lower half.
        assert_eq!(ram.read_u64(PhysAddr(space.root.as_u64() + 256 * 8)), 0xaaaa_0003);
        assert_eq!(ram.read_u64(PhysAddr(space.root.as_u64() + 511 * 8)), 0xbbbb_0003);
        for virt in [0, 0x1000, IMAGE_BASE - 0x1000, IMAGE_BASE + 0x6000, MESSAGE_PAGE + 0x1000, USER_LIMIT - 0x1000] {
            assert!(walk(&ram, &space, virt).is_none(), "{virt:#x} is mapped");
        }
    }

    #[test]
    fn nothing_is_writable_and_executable_and_every_lower_page_is_user() {
        let (mut ram, mut frames) = setup();
        let kernel = vec![0; KERNEL.len() as usize];
        let space = build_sample(&mut ram, &mut frames, &kernel).unwrap();
        let regions = [
            (IMAGE_BASE, 0x6000),
            (STACK_TOP - STACK_BYTES, STACK_BYTES),
            (HEAP_BASE, 64 << 10),
            (MESSAGE_PAGE, FRAME_SIZE),
            (GUEST_RAM_BASE, RAM.len()),
            (BOOT_INFO_BASE, FRAME_SIZE),
            (MODULES_BASE, 0x3000),
        ];
        for (start, len) in regions {
            let mut virt = start;
            while virt < start + len {
                let Some(page) = walk(&ram, &space, virt) else {
                    virt += FRAME_SIZE;
                    continue;
                };
                assert!(page.flags.contains(X86Flags::USER), "{virt:#x}");
                assert!(
                    !page.flags.contains(X86Flags::WRITABLE) || page.flags.contains(X86Flags::NO_EXECUTE),
                    "{virt:#x} is writable and executable"
                );
                virt += FRAME_SIZE;
            }
        }
    }

    #[test]
    fn running_out_of_frames_gives_every_frame_back() {
        let mut ram = FakeRam::default();
        let mut frames = FrameAllocator::new([PhysRange::new(0x10_0000, 0x10_0000 + 40 * FRAME_SIZE)], &[]);
        let before = frames.free_bytes();
        let kernel = vec![0; KERNEL.len() as usize];
        assert_eq!(build_sample(&mut ram, &mut frames, &kernel).unwrap_err(), SpaceError::OutOfFrames);
        assert_eq!(frames.free_bytes(), before);
    }

    #[test]
    fn owned_frames_are_exactly_the_ones_taken() {
        let (mut ram, mut frames) = setup();
        let before = frames.free_bytes();
        let kernel = vec![0; KERNEL.len() as usize];
        let space = build_sample(&mut ram, &mut frames, &kernel).unwrap();
        assert_eq!(before - frames.free_bytes(), space.owned_frames.len() as u64 * FRAME_SIZE);
        for frame in &space.owned_frames {
            assert!(!RAM.contains(*frame) && !KERNEL.contains(*frame));
        }
    }

    #[test]
    fn refuses_oversized_inputs() {
        let (mut ram, mut frames) = setup();
        let file = sample();
        let image = parse(&file).unwrap();
        let big = vec![0u8; BOOT_INFO_MAX_BYTES + 1];
        let request = SpaceRequest {
            image: &image,
            heap_bytes: 0,
            guest_ram: RAM,
            modules: &[],
            boot_info: &big,
            shim_root: PhysAddr(SHIM_ROOT),
        };
        assert_eq!(build(&mut ram, &mut frames, &request).unwrap_err(), SpaceError::BootInfoTooLarge(big.len()));
    }

    #[test]
    fn modules_follow_each_other_on_their_own_pages() {
        assert_eq!(
            module_addresses([1, 0x1000, 0x1001, 0]),
            vec![MODULES_BASE, MODULES_BASE + 0x1000, MODULES_BASE + 0x2000, MODULES_BASE + 0x4000]
        );
    }
}
