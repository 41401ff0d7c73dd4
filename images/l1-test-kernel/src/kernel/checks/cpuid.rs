//! `cpuid`: the identity and features the CPUID policy presents.
//!
//! Asserts: a printable 12-character vendor (and the expected one, if
//! given); a maximum basic leaf of at least 1; the features this kernel
//! itself uses (TSC, MSR, APIC, long mode); the hypervisor and VMX bits
//! against `expect-hypervisor`/`expect-vmx`; the boot CPU's initial APIC id
//! (leaf 1, and leaf 0xB when present) against `expect-apic-id`; leaves
//! 0x15/0x16 against `expect-tsc-khz`; the hypervisor signature against
//! `expect-hv-signature`. Prints the brand string and hypervisor leaves.

use l1_test_kernel::cpu_info::{
    initial_apic_id, register_string, Printable, TscLeaves, ECX_HYPERVISOR, ECX_VMX, EDX_APIC, EDX_MSR, EDX_TSC,
    EXT_EDX_LONG_MODE,
};

use super::{fail, note, require, Context, Report};
use crate::arch::cpu::cpuid;

const LEAF_EXTENDED_TOPOLOGY: u32 = 0x0b;
const LEAF_TSC_CRYSTAL: u32 = 0x15;
const LEAF_FREQUENCY: u32 = 0x16;
const LEAF_HYPERVISOR: u32 = 0x4000_0000;
const LEAF_EXTENDED_MAX: u32 = 0x8000_0000;
const LEAF_EXTENDED_FEATURES: u32 = 0x8000_0001;
const LEAF_BRAND_FIRST: u32 = 0x8000_0002;
const LEAF_BRAND_LAST: u32 = 0x8000_0004;

pub fn run(context: &Context, report: &mut Report) {
    let expect = &context.options.expect;

    let leaf0 = cpuid(0, 0);
    let max_leaf = leaf0.eax;
    let vendor = register_string([leaf0.ebx, leaf0.edx, leaf0.ecx]);
    note!(report, "vendor {}, max basic leaf {max_leaf:#x}", Printable(&vendor));
    require!(report, vendor.iter().all(u8::is_ascii_graphic), "vendor string is not printable: {}", Printable(&vendor));
    if let Some(wanted) = expect.vendor {
        require!(report, wanted.as_bytes() == vendor, "vendor: expected {wanted}, saw {}", Printable(&vendor));
    }
    if max_leaf < 1 {
        fail!(report, "max basic leaf: expected at least 1, saw {max_leaf:#x}");
        return;
    }

    let leaf1 = cpuid(1, 0);
    note!(report, "leaf 1: eax {:#x} ebx {:#x} ecx {:#x} edx {:#x}", leaf1.eax, leaf1.ebx, leaf1.ecx, leaf1.edx);
    for (bit, name) in [(EDX_TSC, "TSC"), (EDX_MSR, "MSR"), (EDX_APIC, "APIC")] {
        require!(report, leaf1.edx & bit != 0, "leaf 1 EDX: expected {name}, it is clear");
    }
    let hypervisor = leaf1.ecx & ECX_HYPERVISOR != 0;
    if let Some(wanted) = expect.hypervisor {
        require!(report, hypervisor == wanted, "hypervisor bit: expected {}, saw {}", wanted as u8, hypervisor as u8);
    }
    let vmx = leaf1.ecx & ECX_VMX != 0;
    if let Some(wanted) = expect.vmx {
        require!(report, vmx == wanted, "VMX bit: expected {}, saw {}", wanted as u8, vmx as u8);
    }

    let apic_id = initial_apic_id(leaf1.ebx);
    require!(report, apic_id == expect.apic_id, "initial APIC id: expected {}, saw {apic_id}", expect.apic_id);
    if max_leaf >= LEAF_EXTENDED_TOPOLOGY {
        let topology = cpuid(LEAF_EXTENDED_TOPOLOGY, 0);
        // EBX = 0 means the leaf is not implemented.
        if topology.ebx != 0 {
            require!(
                report,
                topology.edx == apic_id,
                "leaf 0xb x2APIC id: expected {apic_id} (leaf 1), saw {}",
                topology.edx
            );
        }
    }

    check_tsc_leaves(context, report, max_leaf);
    check_extended_leaves(report);
    if hypervisor {
        report_hypervisor_leaves(context, report);
    } else if let Some(wanted) = expect.hypervisor_signature {
        fail!(report, "hypervisor signature: expected {wanted}, but the hypervisor bit is clear");
    }
}

fn check_tsc_leaves(context: &Context, report: &mut Report, max_leaf: u32) {
    let leaves = TscLeaves {
        leaf_15: (max_leaf >= LEAF_TSC_CRYSTAL).then(|| {
            let leaf = cpuid(LEAF_TSC_CRYSTAL, 0);
            [leaf.eax, leaf.ebx, leaf.ecx]
        }),
        leaf_16_base_mhz: (max_leaf >= LEAF_FREQUENCY).then(|| cpuid(LEAF_FREQUENCY, 0).eax),
    };
    if let Some([denominator, numerator, crystal_hz]) = leaves.leaf_15 {
        note!(report, "leaf 0x15: TSC/crystal {numerator}/{denominator}, crystal {crystal_hz} Hz");
    }
    if let Some(mhz) = leaves.leaf_16_base_mhz {
        note!(report, "leaf 0x16: base frequency {mhz} MHz");
    }
    if let Some(khz) = context.options.expect.tsc_khz {
        if let Err(mismatch) = leaves.check(khz) {
            fail!(report, "TSC frequency: expected CPUID to describe {khz} kHz, but {mismatch}");
        }
    }
}

fn check_extended_leaves(report: &mut Report) {
    let max = cpuid(LEAF_EXTENDED_MAX, 0).eax;
    if max < LEAF_EXTENDED_FEATURES {
        fail!(report, "max extended leaf: expected at least {LEAF_EXTENDED_FEATURES:#x}, saw {max:#x}");
        return;
    }
    let features = cpuid(LEAF_EXTENDED_FEATURES, 0);
    require!(
        report,
        features.edx & EXT_EDX_LONG_MODE != 0,
        "leaf 0x80000001 EDX: expected long mode (this kernel runs in it), it is clear"
    );
    if max >= LEAF_BRAND_LAST {
        let mut brand = [0u8; 48];
        for (chunk, leaf) in brand.chunks_exact_mut(16).zip(LEAF_BRAND_FIRST..=LEAF_BRAND_LAST) {
            let r = cpuid(leaf, 0);
            for (bytes, register) in chunk.chunks_exact_mut(4).zip([r.eax, r.ebx, r.ecx, r.edx]) {
                bytes.copy_from_slice(&register.to_le_bytes());
            }
        }
        let length = brand.iter().position(|&b| b == 0).unwrap_or(brand.len());
        note!(report, "max extended leaf {max:#x}, brand \"{}\"", Printable(brand[..length].trim_ascii()));
    }
}

fn report_hypervisor_leaves(context: &Context, report: &mut Report) {
    let leaf = cpuid(LEAF_HYPERVISOR, 0);
    let signature = register_string([leaf.ebx, leaf.ecx, leaf.edx]);
    note!(report, "hypervisor leaf {LEAF_HYPERVISOR:#x}: max {:#x}, signature \"{}\"", leaf.eax, Printable(&signature));
    if let Some(wanted) = context.options.expect.hypervisor_signature {
        require!(
            report,
            wanted.as_bytes() == signature,
            "hypervisor signature: expected {wanted}, saw {}",
            Printable(&signature)
        );
    }
}
