//! The two cascaded 8259A interrupt controllers.

use crate::arch::port::{inb, outb};

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;

/// Where IRQ 0-7 and 8-15 land: right after the 32 exception vectors.
pub const MASTER_VECTOR_BASE: u8 = 0x20;
pub const SLAVE_VECTOR_BASE: u8 = 0x28;
/// The master input the slave is wired to.
const CASCADE_IRQ: u8 = 2;

const ICW1_INIT_WITH_ICW4: u8 = 0x11; // edge triggered, cascaded, ICW4 follows
const ICW4_8086: u8 = 0x01;
const OCW2_EOI: u8 = 0x20; // non-specific end of interrupt
const OCW3_READ_ISR: u8 = 0x0b;

fn write(port: u16, value: u8) {
    // Safe because these ports are the 8259As (see devices/mod.rs).
    unsafe { outb(port, value) }
}

fn read(port: u16) -> u8 {
    // Safe because these ports are the 8259As (see devices/mod.rs).
    unsafe { inb(port) }
}

/// The initialization sequence (ICW1-ICW4) for both controllers, then
/// every line masked.
pub fn init() {
    write(MASTER_COMMAND, ICW1_INIT_WITH_ICW4);
    write(SLAVE_COMMAND, ICW1_INIT_WITH_ICW4);
    write(MASTER_DATA, MASTER_VECTOR_BASE);
    write(SLAVE_DATA, SLAVE_VECTOR_BASE);
    write(MASTER_DATA, 1 << CASCADE_IRQ); // ICW3: slave on IR2
    write(SLAVE_DATA, CASCADE_IRQ); // ICW3: slave identity
    write(MASTER_DATA, ICW4_8086);
    write(SLAVE_DATA, ICW4_8086);
    mask_all();
}

/// Unmasks exactly the IRQs set in `enabled` (bit n = IRQ n); the cascade
/// line opens with any slave IRQ.
pub fn unmask_only(enabled: u16) {
    let cascade = if enabled >> 8 != 0 { 1 << CASCADE_IRQ } else { 0 };
    write(MASTER_DATA, !(enabled as u8 | cascade));
    write(SLAVE_DATA, !((enabled >> 8) as u8));
}

pub fn mask_all() {
    write(MASTER_DATA, 0xff);
    write(SLAVE_DATA, 0xff);
}

/// The mask registers (bit n = IRQ n masked).
pub fn masks() -> u16 {
    u16::from(read(MASTER_DATA)) | u16::from(read(SLAVE_DATA)) << 8
}

/// The in-service registers (bit n = IRQ n being handled).
pub fn in_service() -> u16 {
    write(MASTER_COMMAND, OCW3_READ_ISR);
    write(SLAVE_COMMAND, OCW3_READ_ISR);
    u16::from(read(MASTER_COMMAND)) | u16::from(read(SLAVE_COMMAND)) << 8
}

/// Ends `irq`'s service; a slave IRQ needs an EOI at both controllers.
pub fn end_of_interrupt(irq: u8) {
    if irq >= 8 {
        write(SLAVE_COMMAND, OCW2_EOI);
    }
    write(MASTER_COMMAND, OCW2_EOI);
}
