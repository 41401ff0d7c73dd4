//! Boot-time memory: from the loader's memory map to the heap, the frame
//! allocator and the shim's own page tables.
//!
//! The trampoline's tables map the first 4 GiB three times over with
//! everything writable and executable. They are replaced here by tables
//! that map the shim's image per section (code read-only, data no-execute,
//! a guard page under the boot stack and under each interrupt stack) and
//! all RAM once, at the direct map,
//! read-write and no-execute. The lower half stays empty: a stray null or
//! low pointer faults, and the monitors get it for their own address spaces.

use core::sync::atomic::{AtomicU64, Ordering};

use l0_shim::boot_info::{self, BootInfo, BootInfoError};
use l0_shim::layout::{phys_to_virt, BOOT_DIRECT_MAP_SIZE, KERNEL_VIRT_OFFSET, MMIO_WINDOW_BASE, MMIO_WINDOW_SIZE};
use l0_shim::memory::{
    choose_region, FrameAllocator, MapError, PageSize, PageTableBuilder, PhysAddr, PhysMemory, PhysRange, X86Flags,
    X86Paging, FRAME_SIZE,
};
use multiboot2::BootInformation;
use spin::Mutex;

use crate::arch::cpu::{cpuid, write_cr3};
use crate::arch::descriptors::ist;
use crate::kernel::{heap, percpu};

/// The shim's heap. Guest memory never comes from it (that is whole frames
/// from the frame allocator), so it only holds the shim's own bookkeeping.
const HEAP_SIZE: u64 = 16 << 20;
/// Room for the fixed reservations plus this many boot modules.
const MAX_RESERVED_RANGES: usize = 64;

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);
static HEAP_VIRT: AtomicU64 = AtomicU64::new(0);
/// The shim's own top-level page table.
static SHIM_ROOT: AtomicU64 = AtomicU64::new(0);
/// The next free address in the MMIO window.
static MMIO_NEXT: AtomicU64 = AtomicU64::new(MMIO_WINDOW_BASE);

extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_phys_end: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static boot_stack_guard: u8;
}

fn symbol_address(symbol: &u8) -> u64 {
    symbol as *const u8 as u64
}

/// The shim image's sections, from the linker script.
struct ImageLayout {
    physical: PhysRange,
    text: (u64, u64),
    rodata: (u64, u64),
    data: (u64, u64),
    /// Pages in the data range left unmapped so that a stack overflow
    /// faults: below the boot stack and below each interrupt stack. Sorted.
    guard_pages: [u64; GUARD_PAGES],
}

const GUARD_PAGES: usize = 1 + ist::COUNT;

fn image_layout() -> ImageLayout {
    // Safe because these are linker-script symbols: only their addresses
    // are taken, their "contents" are never read.
    unsafe {
        ImageLayout {
            physical: PhysRange::new(symbol_address(&__kernel_phys_start), symbol_address(&__kernel_phys_end)),
            text: (symbol_address(&__text_start), symbol_address(&__text_end)),
            rodata: (symbol_address(&__rodata_start), symbol_address(&__rodata_end)),
            data: (symbol_address(&__data_start), symbol_address(&__data_end)),
            guard_pages: guard_pages(symbol_address(&boot_stack_guard)),
        }
    }
}

fn guard_pages(boot_stack_guard_page: u64) -> [u64; GUARD_PAGES] {
    let mut pages = [boot_stack_guard_page; GUARD_PAGES];
    for (slot, page) in pages[1..].iter_mut().enumerate() {
        *page = percpu::boot_cpu_interrupt_stack(slot).1;
    }
    pages.sort_unstable();
    pages
}

/// Page tables are edited through the direct map.
pub struct DirectMap;

impl PhysMemory for DirectMap {
    fn read_u64(&self, addr: PhysAddr) -> u64 {
        // Safe because page-table frames come from the frame allocator,
        // which hands out RAM that the direct map covers.
        unsafe { core::ptr::read_volatile(phys_to_virt(addr.as_u64()) as *const u64) }
    }

    fn write_u64(&mut self, addr: PhysAddr, value: u64) {
        // Safe because of the same reason as `read_u64`, and the frame is
        // owned by the page tables being built.
        unsafe { core::ptr::write_volatile(phys_to_virt(addr.as_u64()) as *mut u64, value) };
    }
}

#[derive(Debug)]
pub enum MemoryInitError {
    TooManyModules,
    NoRoomForHeap,
    BootInfo(BootInfoError),
    PageTables(MapError),
}

impl core::fmt::Display for MemoryInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyModules => write!(f, "more than {} boot modules", MAX_RESERVED_RANGES - 3),
            Self::NoRoomForHeap => {
                write!(f, "no free {} MiB of RAM below 4 GiB for the shim's heap", HEAP_SIZE >> 20)
            }
            Self::BootInfo(error) => write!(f, "{error}"),
            Self::PageTables(error) => write!(f, "building the shim's page tables: {error:?}"),
        }
    }
}

/// Sets up the heap, the frame allocator and the shim's own page tables.
/// `info` must be reachable through the boot direct map.
pub fn init(info: &BootInformation, info_phys: u64) -> Result<BootInfo, MemoryInitError> {
    let image = image_layout();
    let info_range = PhysRange::new(info_phys, info_phys + info.total_size() as u64);
    let mut reserved = [PhysRange::default(); MAX_RESERVED_RANGES];
    let mut reserved_count = boot_info::reserved_at_boot(info, info_range, image.physical, &mut reserved)
        .ok_or(MemoryInitError::TooManyModules)?;

    let heap_range = choose_region(boot_info::usable_ram(info), &reserved[..reserved_count], HEAP_SIZE, 2 << 20)
        .filter(|range| range.end.as_u64() <= BOOT_DIRECT_MAP_SIZE)
        .ok_or(MemoryInitError::NoRoomForHeap)?;
    // Safe because the range is usable RAM that no loader structure, module
    // or image overlaps, it is mapped by the boot direct map (checked above)
    // and stays in the final one, and it is handed to nothing else.
    unsafe { heap::init(phys_to_virt(heap_range.start.as_u64()) as *mut u8, HEAP_SIZE as usize) };
    HEAP_VIRT.store(phys_to_virt(heap_range.start.as_u64()), Ordering::Relaxed);
    reserved[reserved_count] = heap_range;
    reserved_count += 1;

    let boot = BootInfo::from_multiboot2(info).map_err(MemoryInitError::BootInfo)?;
    let usable =
        boot.memory_map.iter().filter(|region| region.kind == boot_info::RegionKind::Usable).map(|region| region.range);
    let mut frames = FrameAllocator::new(usable, &reserved[..reserved_count]);

    let root = build_page_tables(&boot, &image, &mut frames).map_err(MemoryInitError::PageTables)?;
    // Safe because the new tables map the shim's code, stack, data and heap
    // at the addresses they run at now (everything high-half), and the boot
    // information has been copied out of the loader's memory.
    unsafe { write_cr3(root.as_u64()) };
    SHIM_ROOT.store(root.as_u64(), Ordering::Relaxed);
    *FRAMES.lock() = Some(frames);
    Ok(boot)
}

fn build_page_tables(boot: &BootInfo, image: &ImageLayout, frames: &mut FrameAllocator) -> Result<PhysAddr, MapError> {
    const GIGABYTE_PAGES: u32 = 1 << 26; // CPUID.80000001H:EDX
    let largest_page =
        if cpuid(0x8000_0001, 0).edx & GIGABYTE_PAGES != 0 { PageSize::Size1G } else { PageSize::Size2M };
    let mut memory = DirectMap;
    let mut tables = PageTableBuilder::<X86Paging, _, _>::new(&mut memory, frames)?;

    let data = X86Flags::WRITABLE | X86Flags::NO_EXECUTE | X86Flags::GLOBAL;
    for range in boot.direct_map_ranges() {
        tables.map_range(phys_to_virt(range.start.as_u64()), range.start, range.len(), data, largest_page)?;
    }

    let mut map_image = |(start, end): (u64, u64), flags| {
        tables.map_range(start, PhysAddr::new(start - KERNEL_VIRT_OFFSET), end - start, flags, PageSize::Size4K)
    };
    map_image(image.text, X86Flags::GLOBAL)?;
    map_image(image.rodata, X86Flags::NO_EXECUTE | X86Flags::GLOBAL)?;
    let mut start = image.data.0;
    for guard in image.guard_pages {
        map_image((start, guard), data)?;
        start = guard + FRAME_SIZE;
    }
    map_image((start, image.data.1), data)?;
    Ok(tables.root())
}

/// Whether `len` bytes at `address` are shim memory that is certainly
/// mapped: the image's data and bss (the boot and interrupt stacks) or the
/// heap. Used by the backtrace walker, which must not fault.
pub fn is_mapped_shim_memory(address: u64, len: u64) -> bool {
    let Some(end) = address.checked_add(len) else { return false };
    let image = image_layout();
    let in_range = |start: u64, stop: u64| start <= address && end <= stop;
    let heap = HEAP_VIRT.load(Ordering::Relaxed);
    let in_guard_page = image.guard_pages.iter().any(|&guard| address < guard + FRAME_SIZE && end > guard);
    (in_range(image.data.0, image.data.1) && !in_guard_page) || (heap != 0 && in_range(heap, heap + HEAP_SIZE))
}

/// Whether `address` lies in one of the unmapped guard pages below the
/// shim's stacks: a fault there is a stack overflow.
pub fn is_stack_guard_page(address: u64) -> bool {
    image_layout().guard_pages.iter().any(|&guard| (guard..guard + FRAME_SIZE).contains(&address))
}

/// Runs `f` with the frame allocator.
pub fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator) -> R) -> R {
    let mut frames = FRAMES.lock();
    f(frames.as_mut().expect("the frame allocator exists once memory::init has run"))
}

/// The shim's own page tables (what CR3 holds outside the monitors).
pub fn shim_root() -> PhysAddr {
    PhysAddr::new(SHIM_ROOT.load(Ordering::Relaxed))
}

#[derive(Debug)]
pub enum MmioMapError {
    WindowFull,
    PageTables(MapError),
}

impl core::fmt::Display for MmioMapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::WindowFull => write!(f, "the {} GiB MMIO window is full", MMIO_WINDOW_SIZE >> 30),
            Self::PageTables(error) => write!(f, "mapping device registers: {error:?}"),
        }
    }
}

/// Maps a device's registers at `range` into the MMIO window, uncached (PCD and PWT:
/// the power-on PAT's UC entry, which the shim keeps), and returns the virtual address of
/// `range.start`. Mappings are for good: devices are set up once at boot.
pub fn map_mmio(range: PhysRange) -> Result<u64, MmioMapError> {
    let pages = range.grow_to(FRAME_SIZE);
    let virt = MMIO_NEXT.fetch_add(pages.len(), Ordering::Relaxed);
    if virt.checked_add(pages.len()).is_none_or(|end| end > MMIO_WINDOW_BASE + MMIO_WINDOW_SIZE) {
        return Err(MmioMapError::WindowFull);
    }
    let flags = X86Flags::WRITABLE
        | X86Flags::NO_EXECUTE
        | X86Flags::GLOBAL
        | X86Flags::CACHE_DISABLE
        | X86Flags::WRITE_THROUGH;
    with_frames(|frames| {
        let mut memory = DirectMap;
        let mut tables = PageTableBuilder::<X86Paging, _, _>::with_root(&mut memory, frames, shim_root())?;
        // Fresh addresses: no stale translation can be cached for them, so no flush.
        tables.map_range(virt, pages.start, pages.len(), flags, PageSize::Size4K)
    })
    .map_err(MmioMapError::PageTables)?;
    Ok(virt + (range.start.as_u64() - pages.start.as_u64()))
}

impl l0_shim::monitor_space::FrameContents for DirectMap {
    fn write_bytes(&mut self, at: PhysAddr, bytes: &[u8]) {
        write_bytes(at, bytes);
    }

    fn zero_frame(&mut self, frame: PhysAddr) {
        zero_frame(frame);
    }
}

/// Copies `bytes` to physical memory at `at`, which the caller owns.
pub fn write_bytes(at: PhysAddr, bytes: &[u8]) {
    // Safe because the caller owns the RAM (frames from the frame
    // allocator), which the direct map covers.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys_to_virt(at.as_u64()) as *mut u8, bytes.len()) };
}

/// Copies physical memory at `at`, which the caller owns, into `buffer`.
pub fn read_bytes(at: PhysAddr, buffer: &mut [u8]) {
    // Safe for the same reasons as `write_bytes`.
    unsafe {
        core::ptr::copy_nonoverlapping(phys_to_virt(at.as_u64()) as *const u8, buffer.as_mut_ptr(), buffer.len())
    };
}

/// Fills a frame owned by the caller with zeroes.
pub fn zero_frame(frame: PhysAddr) {
    // Safe because the frame is RAM covered by the direct map and the
    // caller owns it (it came from the frame allocator).
    unsafe { core::ptr::write_bytes(phys_to_virt(frame.as_u64()) as *mut u8, 0, FRAME_SIZE as usize) };
}

/// Fills a frame owned by the caller with `bytes`.
pub fn write_frame(frame: PhysAddr, bytes: &[u8; 4096]) {
    // Safe for the same reasons as `zero_frame`.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), phys_to_virt(frame.as_u64()) as *mut u8, bytes.len()) };
}

/// Writes a u32 at the start of a frame owned by the caller.
pub fn write_u32(frame: PhysAddr, value: u32) {
    // Safe for the same reasons as `zero_frame`.
    unsafe { core::ptr::write_volatile(phys_to_virt(frame.as_u64()) as *mut u32, value) };
}

/// The contents of a boot module. Modules are reserved at boot and never
/// handed to the frame allocator, so the bytes stay valid forever.
pub fn module_bytes(module: &l0_shim::boot_info::BootModule) -> &'static [u8] {
    // Safe because the module lies in memory the direct map covers (the
    // loader's map lists it), it is reserved for good, and nothing writes it.
    unsafe {
        core::slice::from_raw_parts(phys_to_virt(module.range.start.as_u64()) as *const u8, module.range.len() as usize)
    }
}

pub fn heap_size() -> u64 {
    HEAP_SIZE
}
