//! The shim's console on COM1, and the `log` backend that writes to it.
//!
//! Every line carries the TSC at the time it was logged: under Bochs with
//! `clock: sync=none` that is the retired-instruction count, so the log
//! doubles as an exact profile of where boot time goes.

use core::fmt::{self, Write};

use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

use crate::arch::cpu::rdtsc;
use crate::arch::serial::SerialPort;

static CONSOLE: Mutex<SerialPort> = Mutex::new(SerialPort::com1());
static LOGGER: ConsoleLogger = ConsoleLogger;

pub fn init(level: LevelFilter) {
    CONSOLE.lock().init();
    // set_logger fails only when a logger is already set, which is harmless.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Writes to the console without the log prefix.
pub fn print(args: fmt::Arguments) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// For reports from a trap or a panic: if the console lock is held by the
/// code that was interrupted, waiting for it would hang the report forever,
/// so write through a second handle (lines may interleave, but get out).
pub fn print_emergency(args: fmt::Arguments) {
    match CONSOLE.try_lock() {
        Some(mut console) => {
            let _ = console.write_fmt(args);
        }
        None => {
            let _ = SerialPort::com1().write_fmt(args);
        }
    }
}

pub fn drain() {
    SerialPort::com1().drain();
}

struct ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let target = short_target(record.target());
        print(format_args!("[{:>12}] {:<5} {}: {}\n", rdtsc(), record.level(), target, record.args()));
    }

    fn flush(&self) {}
}

/// `l0_shim::kernel::vmx` logs as `vmx`.
fn short_target(target: &str) -> &str {
    let target = target.strip_prefix("l0_shim::").unwrap_or(target);
    target.strip_prefix("kernel::").unwrap_or(target)
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::kernel::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
