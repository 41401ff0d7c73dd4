//! Running code in ring 3: the monitors. See monitor_switch.s for the
//! switch itself; `kernel::monitor` decides when and what.

use core::mem::offset_of;

/// A monitor's registers while it is not running, and the shim's stack
/// pointer while it is. The layout is monitor_switch.s's.
#[repr(C)]
#[derive(Debug, Default, Clone)]
pub struct MonitorContext {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cs: u64,
    pub ss: u64,
    shim_rsp: u64,
}

impl MonitorContext {
    /// A context that starts at `rip` with the stack at `rsp`, all general
    /// registers zero.
    pub fn new(rip: u64, rsp: u64, rflags: u64, cs: u16, ss: u16) -> Self {
        Self { rip, rsp, rflags, cs: u64::from(cs), ss: u64::from(ss), ..Self::default() }
    }
}

// The assembly hard-codes these offsets.
const _: () = {
    assert!(offset_of!(MonitorContext, rdi) == 40);
    assert!(offset_of!(MonitorContext, r15) == 112);
    assert!(offset_of!(MonitorContext, rip) == 120);
    assert!(offset_of!(MonitorContext, ss) == 152);
    assert!(offset_of!(MonitorContext, shim_rsp) == 160);
};

extern "C" {
    fn monitor_enter(context: *mut MonitorContext);
    fn monitor_resume_shim(context: *const MonitorContext) -> !;
}

/// Runs the monitor whose registers `context` holds until it traps back;
/// the trap handler has then updated `context`. The caller has loaded the
/// monitor's CR3 and published `context` for the trap handler.
pub fn enter(context: &mut MonitorContext) {
    // Safe because the context's CS/SS are ring-3 selectors (set by
    // `kernel::monitor`), so IRET cannot raise privilege, and every trap
    // from ring 3 ends in `resume_shim` with this same context, which
    // returns here with the shim's registers and stack restored.
    unsafe { monitor_enter(context) }
}

/// Returns from `enter` for the monitor whose context this is.
///
/// # Safety
/// `context` must be the one `enter` is running with on this CPU, and the
/// caller must be a trap handler that came from ring 3 (so that `enter`'s
/// frame is still live on the shim's stack).
pub unsafe fn resume_shim(context: *const MonitorContext) -> ! {
    // Safe by the caller's contract.
    unsafe { monitor_resume_shim(context) }
}
