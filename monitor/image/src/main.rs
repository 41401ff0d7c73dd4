//! The monitor image: the ring-3 unikernel the shim runs once per guest.
//!
//! Its whole life is one loop: read the event the shim left in the message
//! page, answer it (`monitor_image::session`), write the answer back and
//! return to the shim with `int 0x80`. The shim resumes it after the
//! `int 0x80` with the next event, all registers as it left them. See
//! `monitor_abi::address_space` for what is mapped where.
//!
//! This file is the only one with `unsafe`: it turns the fixed addresses of
//! that layout into Rust references.
#![no_std]
#![no_main]

extern crate alloc;
// The C runtime symbols the precompiled core library needs.
extern crate bare_metal;

use core::arch::{asm, global_asm};
use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use linked_list_allocator::LockedHeap;
use monitor::guest_memory::SliceMemory;
use monitor_abi::address_space::{
    BOOT_INFO_BASE, BOOT_INFO_MAX_BYTES, GUEST_RAM_BASE, GUEST_RAM_LIMIT, HEAP_BASE, MESSAGE_PAGE,
};
use monitor_abi::boot_info::{BootInfo, ModuleInfo, TestHook};
use monitor_abi::{Action, Response, StopReason, MESSAGE_PAGE_SIZE, TIMING_OFFSET};
use monitor_image::log_queue::LogQueue;
use monitor_image::session::{self, Modules, Outcome, PhaseTimes, Session};

/// The shim sized the heap; more than this is a corrupt boot page.
const MAX_HEAP_BYTES: u64 = 1 << 30;
/// Offset of the heap size in the boot information (its documented layout).
const BOOT_INFO_HEAP_BYTES: u64 = 16;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();
static LOGS: LogQueue = LogQueue::new();
static PANICKING: AtomicBool = AtomicBool::new(false);
/// The sequence number of the event being answered: a failure report
/// answers it too.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);
/// Offset of the sequence number in a message header (monitor_abi).
const HEADER_SEQUENCE: usize = 12;

global_asm!(
    r#"
    .section .text.entry, "ax"
    .global monitor_entry
monitor_entry:
    # The shim starts the monitor with RSP at the top of its stack.
    xor ebp, ebp
    call monitor_main
    ud2
"#
);

#[no_mangle]
extern "C" fn monitor_main() -> ! {
    init_heap();
    let _ = log::set_logger(&LOGS);
    log::set_max_level(log::LevelFilter::Info);
    // Safe because the shim maps BOOT_INFO_MAX_BYTES of boot information
    // read-only at BOOT_INFO_BASE before it starts the monitor.
    let boot_bytes = unsafe { core::slice::from_raw_parts(BOOT_INFO_BASE as *const u8, BOOT_INFO_MAX_BYTES) };
    let boot = match BootInfo::decode(boot_bytes) {
        Ok(boot) if boot.ram_bytes <= GUEST_RAM_LIMIT => boot,
        Ok(boot) => fail(&alloc::format!("guest RAM of {} bytes does not fit the window", boot.ram_bytes)),
        Err(error) => fail(&alloc::format!("unreadable boot information: {error}")),
    };
    // Safe because the shim maps exactly the guest's RAM, read-write, at
    // GUEST_RAM_BASE, and nothing else in this program refers to it.
    let ram = unsafe { core::slice::from_raw_parts_mut(GUEST_RAM_BASE as *mut u8, boot.ram_bytes as usize) };
    let mut memory = SliceMemory::new(ram);
    let mut session = match Session::new(boot) {
        Ok(session) => session,
        Err(problem) => fail(&problem),
    };
    loop {
        // Safe because the message page is mapped read-write and the shim
        // does not touch it while the monitor runs.
        let page = unsafe { core::slice::from_raw_parts_mut(MESSAGE_PAGE as *mut u8, MESSAGE_PAGE_SIZE) };
        let sequence = page[HEADER_SEQUENCE..HEADER_SEQUENCE + 4].try_into().map(u32::from_le_bytes).unwrap_or(0);
        SEQUENCE.store(sequence, Ordering::Relaxed);
        let resumed = rdtsc();
        let mut times = PhaseTimes::default();
        let message = &page[..TIMING_OFFSET];
        match session.handle_timed(message, &mut memory, &MappedModules, host_cpuid, &LOGS, &mut times, rdtsc) {
            Outcome::Respond(bytes) => page[..bytes.len()].copy_from_slice(&bytes),
            Outcome::TestHook(hook) => provoke(hook),
        }
        for (index, time) in [resumed, times.decoded, times.handled, rdtsc()].into_iter().enumerate() {
            let at = TIMING_OFFSET + 8 * index;
            page[at..at + 8].copy_from_slice(&time.to_le_bytes());
        }
        return_to_shim();
    }
}

fn init_heap() {
    // Safe because the boot information page is mapped (see above) and the
    // heap size is a u64 at its documented offset.
    let heap_bytes = unsafe { core::ptr::read_volatile((BOOT_INFO_BASE + BOOT_INFO_HEAP_BYTES) as *const u64) };
    if heap_bytes == 0 || heap_bytes > MAX_HEAP_BYTES {
        // No heap: nothing can be formatted, so just stop.
        halt_forever();
    }
    // Safe because the shim maps heap_bytes of fresh memory read-write at
    // HEAP_BASE for this monitor alone, and this runs once, first.
    unsafe { HEAP.lock().init(HEAP_BASE as *mut u8, heap_bytes as usize) };
}

struct MappedModules;

impl Modules for MappedModules {
    fn bytes(&self, module: &ModuleInfo) -> &[u8] {
        // Safe because BootInfo::decode checked that the module lies in the
        // modules window, where the shim maps each module read-only.
        unsafe { core::slice::from_raw_parts(module.address as *const u8, module.length as usize) }
    }
}

fn host_cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    // CPUID is allowed in ring 3 and does not exit in VMX root operation.
    #[allow(unused_unsafe)]
    // Safe because every x86-64 CPU has CPUID.
    let result = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
    [result.eax, result.ebx, result.ecx, result.edx]
}

fn rdtsc() -> u64 {
    // Safe because RDTSC only reads the time-stamp counter (allowed in
    // ring 3: the shim leaves CR4.TSD clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Hands the message page to the shim; returns with the next event in it.
fn return_to_shim() {
    // Safe because the shim's gate 0x80 (DPL 3) saves every general
    // register and restores it when it resumes the monitor; vector
    // registers and flags are not kept, hence the clobbers.
    unsafe { asm!("int 0x80", clobber_abi("C")) };
}

/// Answers with a stop and never runs again.
fn fail(detail: &str) -> ! {
    let response =
        Response { actions: alloc::vec![Action::Stop { reason: StopReason::MonitorError, detail: detail.into() }] };
    let bytes = session::encode(SEQUENCE.load(Ordering::Relaxed), response, &LOGS);
    // Safe because the message page is mapped read-write (see monitor_main).
    let page = unsafe { core::slice::from_raw_parts_mut(MESSAGE_PAGE as *mut u8, MESSAGE_PAGE_SIZE) };
    page[..bytes.len()].copy_from_slice(&bytes);
    loop {
        return_to_shim();
    }
}

fn provoke(hook: TestHook) {
    match hook {
        TestHook::None => {}
        // Safe in the sense that matters: the address is unmapped (below
        // the image), and the fault is the point.
        TestHook::PageFaultOnExit => unsafe {
            core::ptr::read_volatile(0x1000 as *const u64);
        },
        TestHook::HangOnExit => loop {
            core::hint::spin_loop();
        },
        TestHook::PanicOnExit => panic!("test hook: panic on the first exit"),
        // Answered by the session with a request the shim must refuse.
        TestHook::MapForeignOnExit | TestHook::ForbiddenControlOnExit => {}
    }
}

fn halt_forever() -> ! {
    loop {
        // HLT is privileged: the #GP ends the guest, which is the point.
        // Safe because it only faults.
        unsafe { asm!("hlt") };
    }
}

/// A fixed buffer, so that a panic can be described without the heap.
struct PanicText {
    bytes: [u8; 512],
    length: usize,
}

impl Write for PanicText {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        for &byte in text.as_bytes() {
            if self.length == self.bytes.len() {
                break;
            }
            self.bytes[self.length] = byte;
            self.length += 1;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    if PANICKING.swap(true, Ordering::Relaxed) {
        // A panic while reporting a panic (e.g. the heap is exhausted):
        // fault, and the shim ends the guest naming the fault.
        halt_forever();
    }
    let mut text = PanicText { bytes: [0; 512], length: 0 };
    // One line: the shim prints it in a guest's summary.
    let _ = match info.location() {
        Some(location) => {
            write!(text, "monitor panic at {}:{}: {}", location.file(), location.line(), info.message())
        }
        None => write!(text, "monitor panic: {}", info.message()),
    };
    let detail = core::str::from_utf8(&text.bytes[..text.length]).unwrap_or("monitor panic");
    fail(detail)
}
