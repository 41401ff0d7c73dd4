//! `make run`: boots a scenario headless and streams the shim's console.
//!
//! run-scenario [--scenario NAME] [--emulator bochs|qemu] [--cpu MODEL]
//!              [--memory MIB] [--timeout SECONDS] [--shim-args 'WORDS']
//!
//! Exit status: 0 when the shim ends with success, 1 when it reports a
//! failure, 2 when the emulator crashed or timed out, 130 on Ctrl-C.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use matryoshka_tests::{Emulator, Exit, ImageBuilder, Machine, MachineConfig};

struct Options {
    scenario: String,
    emulator: Emulator,
    memory_mib: u32,
    timeout: Duration,
    shim_args: String,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        scenario: "default".into(),
        emulator: Emulator::bochs(),
        memory_mib: 256,
        timeout: Duration::from_secs(600),
        shim_args: String::new(),
    };
    let mut cpu_model = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => options.scenario = value()?,
            "--emulator" => {
                options.emulator = match value()?.as_str() {
                    "bochs" => Emulator::bochs(),
                    "qemu" => Emulator::Qemu,
                    other => return Err(format!("--emulator {other}: expected bochs or qemu")),
                }
            }
            "--cpu" => cpu_model = Some(value()?),
            "--memory" => {
                let text = value()?;
                options.memory_mib = text.parse().map_err(|_| format!("--memory {text}: expected MiB"))?;
            }
            "--timeout" => {
                let text = value()?;
                let seconds: u64 = text.parse().map_err(|_| format!("--timeout {text}: expected seconds"))?;
                options.timeout = Duration::from_secs(seconds);
            }
            "--shim-args" => options.shim_args = value()?,
            "-h" | "--help" => {
                println!("usage: run-scenario [--scenario NAME] [--emulator bochs|qemu] [--cpu MODEL] [--memory MIB] [--timeout SECONDS] [--shim-args 'WORDS']");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option '{other}' (see --help)")),
        }
    }
    if let Some(model) = cpu_model {
        if options.emulator == Emulator::Qemu {
            return Err("--cpu selects a Bochs CPU model; QEMU runs its default".into());
        }
        options.emulator = Emulator::bochs_with_cpu(&model);
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("run-scenario: {error}");
            return ExitCode::from(2);
        }
    };
    let run_dir = matryoshka_tests::workspace::root().join("build/run");
    let _ = std::fs::remove_dir_all(&run_dir);
    if let Err(error) = std::fs::create_dir_all(&run_dir) {
        eprintln!("run-scenario: cannot create {}: {error}", run_dir.display());
        return ExitCode::from(2);
    }
    let image = ImageBuilder::scenario(&options.scenario).and_then(|builder| {
        builder.command_line(options.emulator.shim_exit_option()).command_line(&options.shim_args).build(&run_dir)
    });
    let image = match image {
        Ok(image) => image,
        Err(error) => {
            eprintln!("run-scenario: {error}");
            return ExitCode::from(2);
        }
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let config = MachineConfig {
        memory_mib: options.memory_mib,
        timeout: options.timeout,
        ..MachineConfig::new(options.emulator)
    };
    eprintln!(
        "run-scenario: booting scenario '{}' under {:?}; files in {}; Ctrl-C stops it",
        options.scenario,
        config.emulator,
        run_dir.display()
    );
    let mut machine = match Machine::boot(&image, &config, &run_dir) {
        Ok(machine) => machine,
        Err(error) => {
            eprintln!("run-scenario: {error}");
            return ExitCode::from(2);
        }
    };
    let mut printed = 0;
    let mut stdout = std::io::stdout();
    let exit = loop {
        let console = machine.console();
        if console.len() > printed {
            let _ = stdout.write_all(&console.as_bytes()[printed..]);
            let _ = stdout.flush();
            printed = console.len();
        }
        if interrupted.load(Ordering::SeqCst) {
            machine.kill();
            eprintln!("\nrun-scenario: stopped by Ctrl-C");
            return ExitCode::from(130);
        }
        if let Some(exit) = machine.try_exit() {
            // Print what arrived between the last read and the end.
            let console = machine.console();
            let _ = stdout.write_all(&console.as_bytes()[printed.min(console.len())..]);
            break exit;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match exit {
        Exit::Success => ExitCode::SUCCESS,
        Exit::Failure => ExitCode::from(1),
        other => {
            eprintln!("{}", machine.failure(&format!("run-scenario: the machine ended with {other:?}")));
            ExitCode::from(2)
        }
    }
}
