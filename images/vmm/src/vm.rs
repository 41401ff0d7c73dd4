//! The virtual machine: KVM's in-kernel 8259s, IOAPIC, local APIC and
//! PIT, guest RAM, one vCPU that starts in flat 32-bit protected mode, and
//! the loop that answers its port I/O exits.

use std::fs::{self, File};
use std::io::Write as _;
use std::time::Instant;

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_dtable, kvm_pit_config, kvm_regs, kvm_segment, kvm_userspace_memory_region,
    KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::args::Args;
use crate::devices::rtc::Rtc;
use crate::devices::{Event, Platform, COM1_IRQ};
use crate::kvm_stats::VcpuStats;
use crate::layout::{
    BootCpu, BOOT_CODE_SELECTOR, BOOT_CR0, BOOT_DATA_SELECTOR, BOOT_GDT, BOOT_GDT_ENTRIES, BOOT_RFLAGS, MIB, MP_TABLE,
};
use crate::{linux_boot, mptable, multiboot};

/// Three pages below 4 GiB that Intel's KVM needs for real-mode emulation;
/// nothing else lives there.
const TSS_ADDRESS: usize = 0xfffb_d000;
const CPUID_1_ECX_VMX: u32 = 1 << 5;
const CPUID_1_ECX_HYPERVISOR: u32 = 1 << 31;

/// How the guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    DebugExit(u32),
    Reset,
    Crashed(String),
}

/// Leaf 1 as this VMM shows it: VMX only with `nested`, the hypervisor
/// bit set, and the initial APIC ID of vCPU 0.
pub fn adjust_cpuid(entries: &mut [kvm_cpuid_entry2], nested: bool) {
    for entry in entries.iter_mut().filter(|entry| entry.function == 1) {
        if nested {
            entry.ecx |= CPUID_1_ECX_VMX & supported_vmx(entry.ecx);
        } else {
            entry.ecx &= !CPUID_1_ECX_VMX;
        }
        entry.ecx |= CPUID_1_ECX_HYPERVISOR;
        entry.ebx &= 0x00ff_ffff;
    }
}

/// VMX stays only where KVM_GET_SUPPORTED_CPUID offers it (nested=1).
fn supported_vmx(ecx: u32) -> u32 {
    ecx & CPUID_1_ECX_VMX
}

/// KVM's view of a GDT descriptor loaded with `selector`.
pub fn segment(selector: u16, descriptor: u64) -> kvm_segment {
    let granular = (descriptor >> 55) & 1 == 1;
    let raw_limit = ((descriptor & 0xffff) | ((descriptor >> 32) & 0xf_0000)) as u32;
    kvm_segment {
        base: ((descriptor >> 16) & 0xff_ffff) | (((descriptor >> 56) & 0xff) << 24),
        limit: if granular { (raw_limit << 12) | 0xfff } else { raw_limit },
        selector,
        type_: ((descriptor >> 40) & 0xf) as u8,
        s: ((descriptor >> 44) & 1) as u8,
        dpl: ((descriptor >> 45) & 3) as u8,
        present: ((descriptor >> 47) & 1) as u8,
        avl: ((descriptor >> 52) & 1) as u8,
        l: ((descriptor >> 53) & 1) as u8,
        db: ((descriptor >> 54) & 1) as u8,
        g: u8::from(granular),
        unusable: 0,
        padding: 0,
    }
}

fn rdtsc() -> u64 {
    // Safe because RDTSC only reads the time-stamp counter.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

pub struct Vm {
    vm: VmFd,
    vcpu: VcpuFd,
    /// Keeps guest RAM mapped while KVM uses it.
    _memory: GuestMemoryMmap,
    platform: Platform,
    stats: Option<VcpuStats>,
}

impl Vm {
    /// Creates the machine and loads the guest `args` names.
    pub fn new(args: &Args) -> Result<Self, String> {
        let ram_bytes = args.mem * MIB;
        let kernel_bytes = fs::read(&args.kernel)
            .map_err(|error| format!("cannot read --kernel {}: {error}", args.kernel.display()))?;
        let kvm = Kvm::new().map_err(|error| {
            format!("cannot open /dev/kvm: {error} (is KVM in the kernel and does this CPU have VT-x?)")
        })?;
        let vm = kvm.create_vm().map_err(|error| format!("KVM_CREATE_VM: {error}"))?;
        vm.set_tss_address(TSS_ADDRESS).map_err(|error| format!("KVM_SET_TSS_ADDR: {error}"))?;
        vm.create_irq_chip().map_err(|error| format!("KVM_CREATE_IRQCHIP: {error}"))?;
        vm.create_pit2(kvm_pit_config::default()).map_err(|error| format!("KVM_CREATE_PIT2: {error}"))?;

        let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), ram_bytes as usize)])
            .map_err(|error| format!("cannot allocate {} MiB of guest RAM: {error}", args.mem))?;
        let host_address =
            memory.get_host_address(GuestAddress(0)).map_err(|error| format!("guest RAM: {error}"))? as u64;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: ram_bytes,
            userspace_addr: host_address,
        };
        // Safe because the region is `memory`'s own mapping of exactly
        // `ram_bytes`, which `Vm` keeps alive as long as the VM exists.
        unsafe { vm.set_user_memory_region(region) }.map_err(|error| format!("KVM_SET_USER_MEMORY_REGION: {error}"))?;

        let gdt: Vec<u8> = BOOT_GDT_ENTRIES.iter().flat_map(|entry| entry.to_le_bytes()).collect();
        let mp_table = mptable::build(MP_TABLE as u32, args.cpus);
        for (bytes, address) in [(&gdt, BOOT_GDT), (&mp_table, MP_TABLE)] {
            memory.write_slice(bytes, GuestAddress(address)).map_err(|error| format!("guest RAM: {error}"))?;
        }
        let cpu = load_kernel(args, &memory, ram_bytes, &kernel_bytes)?;

        let mut vcpu = vm.create_vcpu(0).map_err(|error| format!("KVM_CREATE_VCPU: {error}"))?;
        let mut cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|error| format!("KVM_GET_SUPPORTED_CPUID: {error}"))?;
        if args.nested && !cpuid.as_slice().iter().any(|entry| entry.function == 1 && entry.ecx & CPUID_1_ECX_VMX != 0)
        {
            return Err("--nested: KVM offers no VMX to guests (load kvm_intel with nested=1)".into());
        }
        adjust_cpuid(cpuid.as_mut_slice(), args.nested);
        vcpu.set_cpuid2(&cpuid).map_err(|error| format!("KVM_SET_CPUID2: {error}"))?;
        set_boot_state(&mut vcpu, &cpu)?;
        let stats = match VcpuStats::open(&vcpu) {
            Ok(stats) => Some(stats),
            Err(error) => {
                eprintln!("matryoshka-vmm: no exit statistics (KVM_GET_STATS_FD: {error})");
                None
            }
        };
        eprintln!(
            "matryoshka-vmm: {} MiB, 1 vCPU, VMX {}, entry {:#x}",
            args.mem,
            if args.nested { "shown" } else { "hidden" },
            cpu.entry
        );
        Ok(Self { vm, vcpu, _memory: memory, platform: Platform::new(Rtc::new()), stats })
    }

    /// Runs the guest until it ends.
    pub fn run(&mut self) -> Result<Ending, String> {
        let started = Instant::now();
        let first_tick = rdtsc();
        let ending = self.run_loop();
        let ticks = rdtsc().wrapping_sub(first_tick);
        let _ = std::io::stdout().flush();
        eprintln!(
            "matryoshka-vmm: ran {ticks} TSC ticks ({:.3} s) from the first KVM_RUN",
            started.elapsed().as_secs_f64()
        );
        self.print_stats("end");
        let metrics = self.platform.metrics;
        let serial = self.platform.serial.metrics;
        eprintln!(
            "matryoshka-vmm: unclaimed port reads {}, writes {}; serial read-only writes {}, overruns {}",
            metrics.unclaimed_reads, metrics.unclaimed_writes, serial.read_only_writes, serial.rx_overruns
        );
        ending
    }

    fn print_stats(&self, label: &str) {
        if let Some(stats) = &self.stats {
            match stats.read() {
                Ok(counts) => eprintln!("matryoshka-vmm: stats {label}: tsc={} {counts}", rdtsc()),
                Err(error) => eprintln!("matryoshka-vmm: reading exit statistics: {error}"),
            }
        }
    }

    fn run_loop(&mut self) -> Result<Ending, String> {
        let mut stdout = std::io::stdout();
        loop {
            let event = match self.vcpu.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    self.platform.io_in(port, data);
                    Event::None
                }
                Ok(VcpuExit::IoOut(port, data)) => self.platform.io_out(port, data),
                // Nothing is mapped outside RAM but KVM's own APICs.
                Ok(VcpuExit::MmioRead(_, data)) => {
                    data.fill(0xff);
                    Event::None
                }
                Ok(VcpuExit::MmioWrite(..)) => Event::None,
                Ok(VcpuExit::Shutdown) => return Ok(Ending::Crashed(self.crash_report("triple fault"))),
                Ok(VcpuExit::FailEntry(reason, _)) => {
                    return Ok(Ending::Crashed(self.crash_report(&format!("VM entry failed (reason {reason:#x})"))))
                }
                Ok(VcpuExit::InternalError) => return Ok(Ending::Crashed(self.crash_report("KVM internal error"))),
                // With the in-kernel local APIC KVM handles HLT itself;
                // this exit means HLT with nothing that could wake it.
                Ok(VcpuExit::Hlt) => return Ok(Ending::Crashed(self.crash_report("halted for good"))),
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    return Ok(Ending::Crashed(format!("unexpected system event {kind}")));
                }
                Ok(other) => return Ok(Ending::Crashed(format!("unexpected exit {other:?}"))),
                Err(error) if error.errno() == libc::EINTR || error.errno() == libc::EAGAIN => Event::None,
                Err(error) => return Err(format!("KVM_RUN: {error}")),
            };
            let output = self.platform.serial.take_output();
            if !output.is_empty() {
                stdout.write_all(&output).map_err(|error| format!("writing the guest's console: {error}"))?;
            }
            if let Some(level) = self.platform.serial_line_change() {
                self.vm.set_irq_line(COM1_IRQ, level).map_err(|error| format!("KVM_IRQ_LINE (COM1): {error}"))?;
            }
            match event {
                Event::None => {}
                Event::DebugExit(value) => return Ok(Ending::DebugExit(value)),
                Event::Reset => return Ok(Ending::Reset),
                Event::StatsMarker(value) => self.print_stats(&format!("marker {value}")),
            }
        }
    }

    fn crash_report(&self, what: &str) -> String {
        match self.vcpu.get_regs() {
            Ok(regs) => format!("{what} at RIP {:#x}, RSP {:#x}", regs.rip, regs.rsp),
            Err(_) => what.to_string(),
        }
    }
}

fn load_kernel(args: &Args, memory: &GuestMemoryMmap, ram_bytes: u64, kernel: &[u8]) -> Result<BootCpu, String> {
    let name = args.kernel.display();
    if linux_boot::is_bzimage(kernel) {
        if !args.module.is_empty() {
            return Err(format!("--kernel {name} is a Linux bzImage: --module is for multiboot kernels"));
        }
        let initrd = match &args.initrd {
            Some(path) => {
                Some(fs::read(path).map_err(|error| format!("cannot read --initrd {}: {error}", path.display()))?)
            }
            None => None,
        };
        let mut file = File::open(&args.kernel).map_err(|error| format!("cannot read --kernel {name}: {error}"))?;
        linux_boot::load(memory, ram_bytes, &mut file, initrd.as_deref(), &args.cmdline)
            .map_err(|error| format!("--kernel {name}: {error}"))
    } else if multiboot::has_header(kernel) {
        if args.initrd.is_some() {
            return Err(format!("--kernel {name} is a multiboot kernel: give its files with --module, not --initrd"));
        }
        let modules = args
            .module
            .iter()
            .map(|path| {
                let bytes =
                    fs::read(path).map_err(|error| format!("cannot read --module {}: {error}", path.display()))?;
                Ok(multiboot::Module { bytes, string: path.display().to_string() })
            })
            .collect::<Result<Vec<_>, String>>()?;
        multiboot::load(memory, ram_bytes, kernel, &name.to_string(), &args.cmdline, &modules)
            .map_err(|error| format!("--kernel {name}: {error}"))
    } else {
        Err(format!(
            "--kernel {name} is neither a Linux bzImage (no \"HdrS\" at offset 0x202) nor a multiboot kernel (no header in its first 8 KiB)"
        ))
    }
}

fn set_boot_state(vcpu: &mut VcpuFd, cpu: &BootCpu) -> Result<(), String> {
    let mut sregs = vcpu.get_sregs().map_err(|error| format!("KVM_GET_SREGS: {error}"))?;
    let code = segment(BOOT_CODE_SELECTOR, BOOT_GDT_ENTRIES[usize::from(BOOT_CODE_SELECTOR / 8)]);
    let data = segment(BOOT_DATA_SELECTOR, BOOT_GDT_ENTRIES[usize::from(BOOT_DATA_SELECTOR / 8)]);
    sregs.cs = code;
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.gdt = kvm_dtable { base: BOOT_GDT, limit: (BOOT_GDT_ENTRIES.len() * 8 - 1) as u16, ..Default::default() };
    sregs.idt = kvm_dtable::default();
    sregs.cr0 = BOOT_CR0;
    sregs.cr4 = 0;
    sregs.efer = 0;
    vcpu.set_sregs(&sregs).map_err(|error| format!("KVM_SET_SREGS: {error}"))?;
    let regs = kvm_regs {
        rip: cpu.entry,
        rax: cpu.rax,
        rbx: cpu.rbx,
        rsi: cpu.rsi,
        rflags: BOOT_RFLAGS,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(|error| format!("KVM_SET_REGS: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, ecx: u32, ebx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, ecx, ebx, ..Default::default() }
    }

    #[test]
    fn vmx_is_hidden_unless_nested_and_the_hypervisor_bit_is_set() {
        let supported = [leaf(0, 0, 0x756e_6547), leaf(1, CPUID_1_ECX_VMX | 0x1, 0x0301_0800)];
        let mut hidden = supported;
        adjust_cpuid(&mut hidden, false);
        assert_eq!(hidden[1].ecx, 0x1 | CPUID_1_ECX_HYPERVISOR);
        assert_eq!(hidden[1].ebx, 0x0001_0800, "initial APIC ID 0");
        assert_eq!(hidden[0], supported[0], "other leaves untouched");
        let mut shown = supported;
        adjust_cpuid(&mut shown, true);
        assert_eq!(shown[1].ecx, CPUID_1_ECX_VMX | 0x1 | CPUID_1_ECX_HYPERVISOR);
        // Never more than KVM offers.
        let mut without = [leaf(1, 0x1, 0)];
        adjust_cpuid(&mut without, true);
        assert_eq!(without[0].ecx & CPUID_1_ECX_VMX, 0);
    }

    #[test]
    fn boot_segments_are_flat_32_bit_ring_0() {
        let code = segment(BOOT_CODE_SELECTOR, BOOT_GDT_ENTRIES[2]);
        assert_eq!((code.base, code.limit, code.selector), (0, 0xffff_ffff, 0x10));
        assert_eq!((code.type_, code.s, code.dpl, code.present, code.db, code.l, code.g), (0xb, 1, 0, 1, 1, 0, 1));
        let data = segment(BOOT_DATA_SELECTOR, BOOT_GDT_ENTRIES[3]);
        assert_eq!((data.base, data.limit, data.selector, data.type_, data.db), (0, 0xffff_ffff, 0x18, 0x3, 1));
        // A byte-granular 64 KiB segment at 0x12345678 decodes too.
        let small = segment(0x8, 0x1240_9334_5678_ffff);
        assert_eq!((small.base, small.limit, small.g), (0x1234_5678, 0xffff, 0));
    }
}
