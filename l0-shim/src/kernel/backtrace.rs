//! Frame-pointer backtraces. The shim is built with frame pointers, so each
//! frame starts with [saved RBP, return address]. The walk trusts nothing:
//! it stops at the first frame pointer outside the shim's own memory, so a
//! corrupt stack ends the backtrace instead of faulting inside the report.

use core::fmt::Write;

use crate::kernel::memory;

const MAX_FRAMES: usize = 32;

pub fn write(out: &mut impl Write, rip: Option<u64>, mut rbp: u64) {
    let _ = writeln!(out, "  backtrace (resolve with: addr2line -f -C -e l0-shim.elf ADDRESS...):");
    let mut depth = 0;
    if let Some(rip) = rip {
        let _ = writeln!(out, "    #0  {rip:#018x}");
        depth = 1;
    }
    while depth < MAX_FRAMES {
        if rbp == 0 || !rbp.is_multiple_of(8) || !memory::is_mapped_shim_memory(rbp, 16) {
            break;
        }
        // Safe because `rbp` is aligned and lies in memory the shim maps
        // (its image or the direct map), so both reads stay in mapped memory.
        let (next, return_address) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if return_address == 0 {
            break;
        }
        let _ = writeln!(out, "    #{depth:<2} {return_address:#018x}");
        if next <= rbp {
            // Stacks grow down, so callers' frames lie above; anything else
            // is a corrupt or foreign frame.
            break;
        }
        rbp = next;
        depth += 1;
    }
}

/// The current call chain, for panics.
pub fn write_here(out: &mut impl Write) {
    let rbp = crate::arch::cpu::frame_pointer();
    write(out, None, rbp);
}
