//! Each guest's monitor: an instance of the monitor image running in ring 3
//! in its own address space, and the exchange of one message with it.
//!
//! The shim writes an event into the monitor's message page, switches to
//! it, and reads its response back when it returns with `int 0x80`. Any
//! other way back (an exception in ring 3, or the budget timer because it
//! did not answer in time) is a [`MonitorFailure`]: the caller ends that
//! guest, and nothing else is affected. A monitor cannot reach the shim or
//! another guest: its page tables map only its own memory, its guest's RAM
//! and its guest's boot modules (see `l0_shim::monitor_space`).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use l0_shim::boot_config::MONITOR_MODULE;
use l0_shim::boot_info::BootInfo;
use l0_shim::memory::{PhysRange, FRAME_SIZE};
use l0_shim::monitor_image::{self, MonitorImage};
use l0_shim::monitor_space::{self, MonitorSpace, SpaceRequest};
use matryoshka_config::GuestConfig;
use monitor_abi::address_space::STACK_TOP;
use monitor_abi::boot_info::{self as abi_boot, ModuleInfo, TestHook};
use monitor_abi::{
    decode_response, encode_event, DecodeError, Event, Response, HEADER_LEN, MAX_PAYLOAD, MESSAGE_PAGE_SIZE,
    TIMING_OFFSET,
};
use spin::Once;

use crate::arch::cpu::{rdtsc, read_cr2, write_cr3};
use crate::arch::descriptors::MONITOR_RETURN_VECTOR;
use crate::arch::local_apic;
use crate::arch::ring3::{self, MonitorContext};
use crate::kernel::guest_images::Uploads;
use crate::kernel::guest_ram::GuestRam;
use crate::kernel::memory::{self, DirectMap};
use crate::kernel::percpu;
use crate::kernel::traps::TrapFrame;
use crate::kernel::tsc;

const HEAP_BYTES: u64 = 4 << 20;
/// How long a monitor may take to start (it loads the kernel) and to
/// answer one event, in milliseconds of TSC time.
const START_BUDGET_MS: u64 = 2_000;
const EVENT_BUDGET_MS: u64 = 500;
/// RFLAGS in ring 3: interrupts on (the budget timer must reach it), IOPL 0.
const MONITOR_RFLAGS: u64 = 0x202;
const PAGE_FAULT: u8 = 14;

static IMAGE: Once<Result<MonitorImage<'static>, String>> = Once::new();

/// Finds and checks the monitor image among the boot modules, once.
pub fn image(boot: &BootInfo) -> Result<&'static MonitorImage<'static>, String> {
    IMAGE
        .call_once(|| {
            let module = boot
                .module(MONITOR_MODULE)
                .ok_or_else(|| format!("no boot module named '{MONITOR_MODULE}' (the monitor image)"))?;
            monitor_image::parse(memory::module_bytes(module))
                .map_err(|error| format!("the monitor image '{MONITOR_MODULE}' is unusable: {error}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// What the shim tells every monitor about the machine.
pub struct MachineFacts {
    pub tsc_khz: u32,
    /// `monitor_abi::boot_info::flags`.
    pub flags: u32,
    pub wall_clock_unix_secs: u64,
}

/// The host's VMX capability MSRs, for a monitor that emulates VMX:
/// exactly those the capability reader reads (reading one the CPU lacks
/// would fault).
fn host_vmx_msrs() -> Vec<(u32, u64)> {
    if crate::kernel::vmx_root::capabilities().is_none() {
        return Vec::new();
    }
    let mut msrs = Vec::new();
    vmx::capabilities::VmxCapabilities::read(|msr| {
        let value = crate::arch::cpu::read_msr(msr);
        msrs.push((msr, value));
        value
    });
    msrs
}

/// MAXPHYADDR (CPUID 0x80000008:EAX[7:0]).
fn physical_address_width() -> u8 {
    let width = crate::arch::cpu::cpuid(0x8000_0008, 0).eax as u8;
    width.clamp(32, 52)
}

/// An exception a monitor took in ring 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorFault {
    pub vector: u8,
    pub error_code: u64,
    pub rip: u64,
    /// CR2, for a page fault.
    pub address: Option<u64>,
}

/// Why a monitor's answer never came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorFailure {
    Fault(MonitorFault),
    /// The budget timer fired first.
    Unresponsive {
        budget_ms: u64,
    },
    /// It answered with bytes that are not a response.
    Unreadable(DecodeError),
    /// It answered another event than the one asked.
    WrongSequence {
        expected: u32,
        found: u32,
    },
}

impl fmt::Display for MonitorFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fault(MonitorFault { vector, error_code, rip, address }) => {
                let mnemonic = bare_metal::exceptions::mnemonic(*vector);
                write!(f, "monitor fault: {mnemonic} ({}) at RIP {rip:#x}", bare_metal::exceptions::name(*vector))?;
                if let Some(address) = address {
                    write!(f, ", address {address:#x}")?;
                }
                if *error_code != 0 {
                    write!(f, ", error code {error_code:#x}")?;
                }
                Ok(())
            }
            Self::Unresponsive { budget_ms } => write!(f, "monitor stopped answering (no response in {budget_ms} ms)"),
            Self::Unreadable(error) => write!(f, "monitor sent an unreadable response: {error}"),
            Self::WrongSequence { expected, found } => {
                write!(f, "monitor answered event {found}, not event {expected}")
            }
        }
    }
}

/// How the last run of a monitor ended, as the trap handler recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    Answered,
    Fault(MonitorFault),
    OutOfBudget,
}

/// A monitor's registers and how it last came back; the trap handler
/// reaches it through the per-CPU block, which points at its first field.
#[repr(C)]
struct RunState {
    context: MonitorContext,
    returned: Return,
}

pub struct Monitor {
    space: MonitorSpace,
    state: Box<RunState>,
    sequence: u32,
    response: Vec<u8>,
    started: bool,
    /// TSC just before entering the monitor and just after it returned.
    last_run: (u64, u64),
    pub switches: SwitchCost,
}

/// What the switches to and from this monitor cost, in TSC ticks, from
/// the timing words it leaves in its message page.
#[derive(Debug, Default, Clone, Copy)]
pub struct SwitchCost {
    pub exchanges: u64,
    /// Shim about to enter → monitor running.
    pub enter_ticks: u64,
    /// Monitor answered → shim running again.
    pub return_ticks: u64,
    /// The monitor's own work, by phase: decoding the event, deciding the
    /// answer, encoding it.
    pub decode_ticks: u64,
    pub handle_ticks: u64,
    pub encode_ticks: u64,
}

impl fmt::Display for SwitchCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let per = |total: u64| total / self.exchanges.max(1);
        write!(
            f,
            "{} exchanges; per exchange: enter {} ticks, monitor {} (decode {}, handle {}, encode {}), return {}",
            self.exchanges,
            per(self.enter_ticks),
            per(self.decode_ticks + self.handle_ticks + self.encode_ticks),
            per(self.decode_ticks),
            per(self.handle_ticks),
            per(self.encode_ticks),
            per(self.return_ticks)
        )
    }
}

impl Monitor {
    /// Builds a monitor for a guest whose RAM exists already. Its kernel
    /// and ramdisk are the uploaded ones, else the boot modules its
    /// configuration names.
    pub fn create(
        config: &GuestConfig,
        ram: &GuestRam,
        boot: &BootInfo,
        uploads: &Uploads,
        facts: &MachineFacts,
        test_hook: TestHook,
    ) -> Result<Self, String> {
        let image = image(boot)?;
        let mut modules: Vec<(String, PhysRange, &[u8])> = Vec::new();
        let wanted = [(Some(&config.kernel), &uploads.kernel), (config.ramdisk.as_ref(), &uploads.initrd)];
        for (name, upload) in wanted {
            match (name, upload) {
                (Some(name), Some(upload)) => modules.push((name.clone(), upload.range(), upload.bytes())),
                (Some(name), None) => {
                    let module = boot.module(name).ok_or_else(|| format!("no boot module named '{name}'"))?;
                    modules.push((name.clone(), module.range, memory::module_bytes(module)));
                }
                (None, _) => {}
            }
        }
        let addresses = monitor_space::module_addresses(modules.iter().map(|(_, range, _)| range.len()));
        let info = abi_boot::BootInfo {
            ram_bytes: ram.host_range().len(),
            heap_bytes: HEAP_BYTES,
            wall_clock_unix_secs: facts.wall_clock_unix_secs,
            tsc_khz: facts.tsc_khz,
            flags: facts.flags,
            test_hook,
            config_text: config.to_section_text(),
            modules: modules
                .iter()
                .zip(&addresses)
                .map(|((name, range, _), &address)| ModuleInfo { name: name.clone(), address, length: range.len() })
                .collect(),
            // Only a guest offered VMX learns about the host's.
            vmx_msrs: if config.nested_hvm { host_vmx_msrs() } else { Vec::new() },
            physical_address_width: physical_address_width(),
        };
        let boot_info = info.encode().map_err(|error| format!("the monitor's boot information: {error}"))?;
        let module_pages: Vec<(PhysRange, &[u8])> = modules.iter().map(|(_, range, bytes)| (*range, *bytes)).collect();
        let request = SpaceRequest {
            image,
            heap_bytes: HEAP_BYTES,
            guest_ram: ram.host_range(),
            modules: &module_pages,
            boot_info: &boot_info,
            shim_root: memory::shim_root(),
        };
        let space = memory::with_frames(|frames| monitor_space::build(&mut DirectMap, frames, &request))
            .map_err(|error| error.to_string())?;
        let selectors = percpu::current().gdt.selectors;
        let context =
            MonitorContext::new(space.entry, STACK_TOP, MONITOR_RFLAGS, selectors.user_code.0, selectors.user_data.0);
        Ok(Self {
            space,
            state: Box::new(RunState { context, returned: Return::Answered }),
            sequence: 0,
            response: vec![0; MESSAGE_PAGE_SIZE],
            started: false,
            last_run: (0, 0),
            switches: SwitchCost::default(),
        })
    }

    /// Bytes of memory this monitor holds (its image copy, stack, heap,
    /// message page and tables).
    pub fn memory_bytes(&self) -> u64 {
        self.space.owned_frames.len() as u64 * FRAME_SIZE
    }

    /// Sends one event and waits for the answer.
    pub fn exchange(&mut self, event: &Event) -> Result<Response, MonitorFailure> {
        self.sequence = self.sequence.wrapping_add(1);
        let message = encode_event(self.sequence, event).expect("events always fit the message page");
        memory::write_bytes(self.space.message_page, &message);
        let budget_ms = if self.started { EVENT_BUDGET_MS } else { START_BUDGET_MS };
        self.started = true;
        match self.run(budget_ms) {
            Return::Answered => {}
            Return::Fault(fault) => return Err(MonitorFailure::Fault(fault)),
            Return::OutOfBudget => return Err(MonitorFailure::Unresponsive { budget_ms }),
        }
        // A copy: the shim decodes bytes the monitor can no longer change.
        // Only the header, the declared payload and the timing words: a
        // whole page would cost more than the rest of the exchange.
        let page = self.space.message_page;
        memory::read_bytes(page, &mut self.response[..HEADER_LEN]);
        let declared = u32::from_le_bytes(self.response[8..12].try_into().expect("four bytes")) as usize;
        let end = HEADER_LEN + declared.min(MAX_PAYLOAD);
        memory::read_bytes(
            page.checked_add(HEADER_LEN as u64).expect("in the page"),
            &mut self.response[HEADER_LEN..end],
        );
        let timing = page.checked_add(TIMING_OFFSET as u64).expect("in the page");
        memory::read_bytes(timing, &mut self.response[TIMING_OFFSET..]);
        self.count_switch();
        let (sequence, response) = decode_response(&self.response[..end]).map_err(MonitorFailure::Unreadable)?;
        if sequence != self.sequence {
            return Err(MonitorFailure::WrongSequence { expected: self.sequence, found: sequence });
        }
        Ok(response)
    }

    /// Adds this exchange's timing to the totals. The monitor wrote the
    /// words, so they are only believed when they fall inside the run.
    fn count_switch(&mut self) {
        let word = |offset: usize| {
            u64::from_le_bytes(self.response[offset..offset + 8].try_into().expect("eight bytes in the page"))
        };
        let [resumed, decoded, handled, answered] = core::array::from_fn(|index| word(TIMING_OFFSET + 8 * index));
        let (entered, returned) = self.last_run;
        let ordered =
            [entered, resumed, decoded, handled, answered, returned].windows(2).all(|pair| pair[0] <= pair[1]);
        if ordered {
            let cost = &mut self.switches;
            cost.exchanges += 1;
            cost.enter_ticks += resumed - entered;
            cost.decode_ticks += decoded - resumed;
            cost.handle_ticks += handled - decoded;
            cost.encode_ticks += answered - handled;
            cost.return_ticks += returned - answered;
        }
    }

    fn run(&mut self, budget_ms: u64) -> Return {
        let cpu = percpu::current();
        cpu.set_running_monitor(&mut self.state.context);
        // Safe because the monitor's tables map the shim's upper half
        // exactly as the shim's own do (shared top-level entries), so the
        // code and stack running now stay mapped.
        unsafe { write_cr3(self.space.root.as_u64()) };
        local_apic::arm_budget(budget_ms.saturating_mul(tsc::khz()));
        let entered = rdtsc();
        ring3::enter(&mut self.state.context);
        let returned = rdtsc();
        self.last_run = (entered, returned);
        local_apic::disarm_budget();
        // Safe for the same reason, back to the shim's own tables.
        unsafe { write_cr3(memory::shim_root().as_u64()) };
        cpu.set_running_monitor(core::ptr::null_mut());
        // A budget interrupt raised just before the disarm is still
        // pending: take it here, where its handler only acknowledges it.
        crate::arch::cpu::let_pending_interrupts_in();
        self.state.returned
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        memory::with_frames(|frames| {
            for &frame in &self.space.owned_frames {
                let _ = frames.free(PhysRange::frame(frame));
            }
        });
    }
}

/// Called by the trap dispatcher for every trap from ring 3: records how
/// the running monitor came back and returns to the shim where it entered
/// the monitor.
pub fn trap_from_ring3(frame: &TrapFrame) -> ! {
    let context = percpu::current().running_monitor();
    if context.is_null() {
        // Ring 3 runs only through Monitor::run; anything else is a shim bug.
        crate::kernel::boot::fatal(format_args!("trap {} from ring 3 with no monitor running", frame.vector));
    }
    // Safe because `context` points into the RunState of the Monitor whose
    // `run` is on this CPU's stack below us (published just before the
    // switch), and nothing else touches it until `run` continues.
    let state = unsafe { &mut *(context as *mut RunState) };
    let saved = &mut state.context;
    saved.rax = frame.rax;
    saved.rbx = frame.rbx;
    saved.rcx = frame.rcx;
    saved.rdx = frame.rdx;
    saved.rsi = frame.rsi;
    saved.rdi = frame.rdi;
    saved.rbp = frame.rbp;
    saved.r8 = frame.r8;
    saved.r9 = frame.r9;
    saved.r10 = frame.r10;
    saved.r11 = frame.r11;
    saved.r12 = frame.r12;
    saved.r13 = frame.r13;
    saved.r14 = frame.r14;
    saved.r15 = frame.r15;
    saved.rip = frame.rip;
    saved.rsp = frame.rsp;
    // The monitor cannot raise its own privilege through its flags (IOPL
    // and IF are not writable in ring 3), but keep exactly what it runs with.
    saved.rflags = MONITOR_RFLAGS;
    let vector = frame.vector as u8;
    state.returned = match vector {
        MONITOR_RETURN_VECTOR => Return::Answered,
        local_apic::BUDGET_VECTOR => {
            local_apic::end_of_interrupt();
            Return::OutOfBudget
        }
        _ => Return::Fault(MonitorFault {
            vector,
            error_code: frame.error_code,
            rip: frame.rip,
            address: (vector == PAGE_FAULT).then(read_cr2),
        }),
    };
    // Safe because the trap came from ring 3, so the monitor's `run` (and
    // its ring3::enter frame) is live on the shim's stack, and `context`
    // is the one it entered with.
    unsafe { ring3::resume_shim(context) }
}
