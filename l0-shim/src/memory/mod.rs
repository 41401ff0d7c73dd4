//! Memory management of the L0 shim: physical frames and page tables, as pure
//! logic over traits so that it runs and is proven on the host.

pub mod addr;
pub mod frame_allocator;
pub mod page_table;

pub use addr::{PageSize, PhysAddr, PhysRange, FRAME_SIZE, LOW_MEMORY_END, MAX_PHYS_ADDR};
pub use frame_allocator::{choose_region, FrameAllocator, FreeError};
pub use page_table::{
    EptFlags, EptPaging, FrameSource, MapError, MemoryType, PageTableBuilder, PagingFormat, PhysMemory, Translation,
    UnmapError, X86Flags, X86Paging,
};
