//! `hostile=`: misbehave towards the platform, then show that the guest
//! (and so the monitor) is still standing.
//!
//! `devices` writes garbage to every register of the emulated devices
//! (PIC, PIT, port 0x61, CMOS, COM1), with byte, word and dword accesses
//! where a port expects bytes, writes garbage to and reads from unclaimed
//! ports, then reprograms every device and checks that they answer sanely:
//! COM1's scratch register round-trips, the PIC's IMR reads back all
//! masked, CMOS status A and B read back what they were. The ports stay
//! clear of anything that stops the machine (0x60/0x64 keyboard controller
//! reset, 0x92, 0xcf9, 0xf4 debug exit, ACPI), and CMOS garbage goes to its
//! RAM and status registers, not the clock registers, so a later `rtc`
//! check still means something (though garbage in status B, e.g. a switch
//! to binary while updates are stopped, may move the clock's time).
//!
//! `msrs` reads and writes unknown MSRs; each access must raise #GP(0)
//! (or, with `expect-unknown-msr=zero`, read 0 and be ignored).

use l1_test_kernel::cmdline::Hostile;
use l1_test_kernel::cpu_info::hostile_msrs;

use crate::arch::port::{inb, inl, inw, outb, outl, outw};
use crate::arch::probe::{self, Outcome};
use crate::kernel::checks::msr::{read_expectation, read_follows, write_expectation, write_follows};
use crate::kernel::checks::{fail, note, require, Context, Report};
use crate::kernel::devices::{cmos, pic, pit, uart};

/// Byte-wide device registers that get garbage: both PICs, the PIT
/// channels and command port, port B, and COM1 except its data register
/// (which would print the garbage).
const DEVICE_PORTS: [u16; 16] =
    [0x20, 0x21, 0xa0, 0xa1, 0x40, 0x41, 0x42, 0x43, 0x61, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff];
/// Word accesses: each covers its port and the next, both device registers.
const WORD_PORTS: [u16; 6] = [0x20, 0xa0, 0x40, 0x42, 0x3fa, 0x3fe];
/// Dword accesses: each covers four ports, all device registers or unclaimed.
const DWORD_PORTS: [u16; 3] = [0xa0, 0x40, 0x3fc];
/// CMOS indexes that get garbage: status A-D and the CMOS RAM after them.
const CMOS_GARBAGE_INDEXES: core::ops::Range<u8> = 0x0a..0x80;
/// Ports nothing in a small PC claims (nor the three after each, which a
/// dword access also reaches; QEMU's fw_cfg starts at 0x510).
const UNCLAIMED_PORTS: [u16; 4] = [0x0231, 0x0232, 0x02e8, 0x0500];
/// Wrong MSR accesses reported one by one before only counting the rest.
const REPORTED_WRONG_ACCESSES: u32 = 5;
/// Values written to unknown MSRs.
const MSR_VALUES: [u64; 3] = [0, u64::MAX, 0xdead_beef_cafe_f00d];

pub fn run(hostile: Hostile, context: &Context) -> bool {
    let mut report = match hostile {
        Hostile::Devices => Report::new("hostile-devices"),
        Hostile::Msrs => Report::new("hostile-msrs"),
    };
    match hostile {
        Hostile::Devices => devices(context, &mut report),
        Hostile::Msrs => msrs(context, &mut report),
    }
    report.finish()
}

/// A fixed garbage sequence (xorshift32), so a run is reproducible.
struct Garbage(u32);

impl Garbage {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

fn devices(context: &Context, report: &mut Report) {
    let status_a = cmos::read(cmos::STATUS_A);
    let status_b = cmos::read(cmos::STATUS_B);
    note!(report, "writing garbage to the PIC, PIT, port 0x61, CMOS and COM1 (console silent until restored)");
    uart::drain();

    let mut garbage = Garbage(0x1badb002);
    let mut accesses = 0u32;
    // Safe because interrupts are off throughout (whatever the PIC and
    // PIT are made to do, nothing is delivered until they are
    // reprogrammed below), none of these devices can reach memory, and
    // every port is listed above as a device register or unclaimed.
    unsafe {
        for round in 0..4 {
            for port in DEVICE_PORTS {
                let value = match round {
                    0 => 0xff,
                    1 => 0x00,
                    _ => garbage.next() as u8,
                };
                outb(port, value);
                inb(port);
                accesses += 2;
            }
            for port in WORD_PORTS {
                outw(port, garbage.next() as u16);
                inw(port);
                accesses += 2;
            }
            for port in DWORD_PORTS {
                outl(port, garbage.next());
                inl(port);
                accesses += 2;
            }
            for index in CMOS_GARBAGE_INDEXES {
                cmos::write(index, garbage.next() as u8);
                cmos::read(index);
                accesses += 4;
            }
            // Word access to the CMOS pair: index then data in one go.
            outw(0x70, u16::from_le_bytes([0x0e + (garbage.next() % 0x70) as u8, garbage.next() as u8]));
            inw(0x70);
            accesses += 2;
            for port in UNCLAIMED_PORTS {
                outb(port, garbage.next() as u8);
                outw(port, garbage.next() as u16);
                outl(port, garbage.next());
                accesses += 3;
            }
            // The command line's unclaimed port is only read: whoever
            // chose it vouched for reads, not for garbage writes.
            for port in UNCLAIMED_PORTS.into_iter().chain([context.options.unclaimed_port]) {
                inb(port);
                inw(port);
                inl(port);
                accesses += 3;
            }
        }
    }

    uart::init();
    pic::init();
    pit::reset();
    cmos::write(cmos::STATUS_A, status_a);
    cmos::write(cmos::STATUS_B, status_b);
    cmos::read(cmos::STATUS_C); // clears any interrupt flags the garbage raised
    note!(report, "survived {accesses} hostile port accesses; devices reprogrammed");

    uart::write(uart::SCRATCH, 0xa5);
    let scratch = uart::read(uart::SCRATCH);
    require!(report, scratch == 0xa5, "COM1 scratch register after the garbage: wrote 0xa5, read {scratch:#04x}");
    let masks = pic::masks();
    require!(report, masks == 0xffff, "PIC IMR after reprogramming: expected 0xffff, read {masks:#06x}");
    let (a, b) = (cmos::read(cmos::STATUS_A), cmos::read(cmos::STATUS_B));
    require!(
        report,
        (a & 0x7f, b) == (status_a & 0x7f, status_b),
        "CMOS status A/B after restoring: expected {status_a:#04x}/{status_b:#04x}, read {a:#04x}/{b:#04x}"
    );
}

fn msrs(context: &Context, report: &mut Report) {
    let policy = context.options.expect.unknown_msr;
    let (mut reads, mut writes, mut wrong) = (0, 0, 0);
    let mut complain = |report: &mut Report, args: core::fmt::Arguments| {
        wrong += 1;
        if wrong <= REPORTED_WRONG_ACCESSES {
            report.fail(args);
        }
    };
    for msr in hostile_msrs() {
        let result = probe::rdmsr(msr);
        reads += 1;
        if !read_follows(policy, &result) {
            complain(
                report,
                format_args!("RDMSR {msr:#x}: expected {}, saw {}", read_expectation(policy), Outcome(&result)),
            );
        }
        for value in MSR_VALUES {
            // Safe because the MSR is in no architectural, vendor or
            // hypervisor range (see hostile_msrs), so no processor
            // state this kernel relies on can change.
            let result = unsafe { probe::wrmsr(msr, value) };
            writes += 1;
            if !write_follows(policy, &result) {
                complain(
                    report,
                    format_args!(
                        "WRMSR {msr:#x} <- {value:#x}: expected {}, saw {}",
                        write_expectation(policy),
                        Outcome(&result)
                    ),
                );
            }
        }
    }
    if wrong > REPORTED_WRONG_ACCESSES {
        fail!(report, "{wrong} of {} accesses did not do what was expected", reads + writes);
    }
    note!(report, "{reads} RDMSRs and {writes} WRMSRs of unknown MSRs");
}
