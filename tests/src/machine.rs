//! A booted emulator: Bochs (emulated VMX) or QEMU TCG (no VMX, faster).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::image::{BootImage, EndsBy, StoppingLines};

/// Bochs's Skylake-X model: EPT, VPID, unrestricted guest, VMCS shadowing.
pub const BOCHS_VMX_CPU: &str = "corei7_skylake_x";
/// Instructions per emulated second. Linux guests are told the same rate as
/// their TSC frequency (see PLATFORM.md), so it must stay consistent.
pub const BOCHS_IPS: u64 = 50_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emulator {
    Bochs { cpu_model: String },
    Qemu,
}

impl Emulator {
    pub fn bochs() -> Self {
        Self::Bochs { cpu_model: BOCHS_VMX_CPU.to_string() }
    }

    pub fn bochs_with_cpu(cpu_model: &str) -> Self {
        Self::Bochs { cpu_model: cpu_model.to_string() }
    }

    /// The `exit=` word the shim needs to end this emulator.
    pub fn shim_exit_option(&self) -> &'static str {
        match self {
            Self::Bochs { .. } => "exit=bochs",
            Self::Qemu => "exit=qemu",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MachineConfig {
    pub emulator: Emulator,
    pub memory_mib: u32,
    /// The machine is killed when it runs longer (wall time).
    pub timeout: Duration,
    /// An e1000 NIC on the emulator's user-mode network (slirp), if any.
    pub network: Option<HostForward>,
}

impl MachineConfig {
    pub fn new(emulator: Emulator) -> Self {
        Self { emulator, memory_mib: 256, timeout: Duration::from_secs(120), network: None }
    }
}

/// A TCP port on 127.0.0.1 that the emulator's user-mode network forwards to a port of the
/// machine's address (10.0.2.15, what its DHCP server hands out first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    pub host_port: u16,
    pub guest_port: u16,
    pub nic: NicModel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    /// The 82540EM, on both emulators.
    E1000,
    /// The 82574L: QEMU only.
    E1000e,
}

/// The MAC address both emulators give their first NIC by default.
pub const NIC_MAC: &str = "52:54:00:12:34:56";

impl HostForward {
    /// A forward from a port that was free a moment ago (the emulator binds it a little
    /// later; another process taking it meanwhile makes the emulator fail to start).
    pub fn from_free_port(guest_port: u16) -> Result<Self, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free local port: {e}"))?;
        let host_port = listener.local_addr().map_err(|e| e.to_string())?.port();
        Ok(Self { host_port, guest_port, nic: NicModel::E1000 })
    }

    pub fn with_nic(self, nic: NicModel) -> Self {
        Self { nic, ..self }
    }

    /// Where the host reaches the forwarded port.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.host_port)
    }
}

/// How a machine ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The shim (or a bare kernel) reported success and ended the emulator.
    Success,
    /// The shim (or a bare kernel) reported a failure and ended the
    /// emulator in order.
    Failure,
    /// The emulator ended without the kernel saying so: a triple fault, an
    /// emulator panic, or a crash.
    Crashed(String),
    TimedOut,
}

pub struct Machine {
    child: Child,
    dir: PathBuf,
    serial_path: PathBuf,
    emulator: Emulator,
    shim_elf: PathBuf,
    stopping: StoppingLines,
    ends_by: EndsBy,
    started: Instant,
    deadline: Instant,
    /// How far `expect` has read the console.
    consumed: usize,
    exit: Option<Exit>,
}

impl Machine {
    /// Boots `image`; the machine's files go to `dir`, which must be private
    /// to this machine.
    pub fn boot(image: &BootImage, config: &MachineConfig, dir: &Path) -> Result<Self, String> {
        let serial_path = dir.join("console.log");
        let mut command = match &config.emulator {
            Emulator::Bochs { cpu_model } => bochs_command(image, config, cpu_model, dir, &serial_path)?,
            Emulator::Qemu => qemu_command(image, config, &serial_path),
        };
        let terminal = fs::File::create(dir.join("emulator-output.log")).map_err(|e| e.to_string())?;
        let child = command
            .stdin(Stdio::null())
            .stdout(terminal.try_clone().map_err(|e| e.to_string())?)
            .stderr(terminal)
            // Its own process group: Ctrl-C reaches the harness only, and
            // teardown kills the emulator with everything it started.
            .process_group(0)
            .spawn()
            .map_err(|error| format!("cannot start {:?}: {error} (run `make deps`)", config.emulator))?;
        let started = Instant::now();
        Ok(Self {
            child,
            dir: dir.to_path_buf(),
            serial_path,
            emulator: config.emulator.clone(),
            shim_elf: image.shim_elf.clone(),
            stopping: image.stopping,
            ends_by: image.ends_by,
            started,
            deadline: started + config.timeout,
            consumed: 0,
            exit: None,
        })
    }

    /// Everything the shim has written to its console so far.
    pub fn console(&self) -> String {
        fs::read(&self.serial_path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// Waits for a console line containing `needle` that comes after the
    /// previous expected line, and returns it.
    pub fn expect(&mut self, needle: &str) -> Result<String, String> {
        loop {
            let console = self.console();
            let unread = &console[self.consumed.min(console.len())..];
            let mut offset = self.consumed;
            for line in unread.split_inclusive('\n') {
                if !line.ends_with('\n') && self.exit.is_none() {
                    break; // the rest of the line may still come
                }
                offset += line.len();
                if line.contains(needle) {
                    self.consumed = offset;
                    return Ok(line.trim_end().to_string());
                }
            }
            if let Some(exit) = &self.exit {
                return Err(self.failure(&format!("the machine ended ({exit:?}) before printing '{needle}'")));
            }
            match self.try_exit() {
                Some(Exit::TimedOut) => return Err(self.failure(&format!("timed out waiting for '{needle}'"))),
                Some(_) => {} // read the console once more: the line may have come last
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Waits for the machine to end on its own (or kills it at the deadline).
    pub fn wait(&mut self) -> Exit {
        loop {
            if let Some(exit) = self.try_exit() {
                return exit;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the end and checks that it is `expected`.
    pub fn expect_exit(&mut self, expected: Exit) -> Result<(), String> {
        let exit = self.wait();
        if exit == expected {
            Ok(())
        } else {
            Err(self.failure(&format!("expected the machine to end with {expected:?}, but it ended with {exit:?}")))
        }
    }

    /// The machine's end if it has ended (killing it at the deadline).
    pub fn try_exit(&mut self) -> Option<Exit> {
        if self.poll_exit().is_none() && Instant::now() >= self.deadline {
            self.kill();
            self.exit = Some(Exit::TimedOut);
        }
        self.exit.clone()
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn poll_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(self.classify(status));
            }
        }
        self.exit.clone()
    }

    fn classify(&self, status: ExitStatus) -> Exit {
        let console = self.console();
        let said = |line: &str| console.contains(line);
        let code = status.code();
        let (success_code, failure_code) = match (self.ends_by, &self.emulator) {
            (EndsBy::ExitCode, Emulator::Bochs { .. }) => (0, 1),
            (EndsBy::ExitCode, Emulator::Qemu) => (1, 3),
            // Bochs ends with 1 on ACPI S5, QEMU with 0.
            (EndsBy::PowerOff, Emulator::Bochs { .. }) => (1, 1),
            (EndsBy::PowerOff, Emulator::Qemu) => (0, 0),
        };
        match code {
            Some(code) if code == success_code && said(self.stopping.success) => Exit::Success,
            Some(code) if code == failure_code && said(self.stopping.failure) => Exit::Failure,
            _ => Exit::Crashed(format!("emulator {status}{}", self.emulator_complaint())),
        }
    }

    /// The emulator's own last words, e.g. Bochs's triple-fault panic.
    fn emulator_complaint(&self) -> String {
        let log = fs::read_to_string(self.dir.join("bochs.log")).unwrap_or_default();
        log.lines()
            .rev()
            .find(|line| line.contains("PANIC") || line.contains("3rd (") || line.contains("shutdown"))
            .map(|line| format!(": {}", line.trim()))
            .unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let child = self.child.id() as i32;
            // `script` runs the emulator in a session of its own on its pty,
            // outside our child's process group: find it (and anything else
            // below our child) by parentage, and kill each by pid.
            let descendants = descendants_of(child);
            // Safe because these are our own child's process group and the
            // processes it started.
            unsafe {
                libc::kill(-child, libc::SIGKILL);
                for pid in &descendants {
                    libc::kill(*pid, libc::SIGKILL);
                }
            }
            let _ = self.child.wait();
            // Wait until they are gone, so that callers may rely on it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while descendants.iter().any(|pid| is_running(*pid)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// A failure message with what helps to debug it.
    pub fn failure(&self, what: &str) -> String {
        let mut report = format!("{what} (after {:.1} s)\n", self.elapsed().as_secs_f64());
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        let _ = writeln!(report, "--- last {} console lines ({}) ---", tail.len(), self.serial_path.display());
        for line in tail {
            let _ = writeln!(report, "{line}");
        }
        let bochs_log = fs::read_to_string(self.dir.join("bochs.log")).unwrap_or_default();
        let entry_failures = vm_entry_failures(&bochs_log);
        if !entry_failures.is_empty() {
            let _ = writeln!(report, "--- Bochs VM-entry failures and panics ---");
            for line in entry_failures.iter().rev().take(20).rev() {
                let _ = writeln!(report, "{line}");
            }
        }
        let resolved = resolve_backtraces(&console, &self.shim_elf);
        if !resolved.is_empty() {
            let _ = writeln!(report, "--- shim backtrace, resolved ---\n{resolved}");
        }
        report
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (state, parent pid) of a process, from /proc (the fields after the
/// parenthesised command name: state, ppid, ...).
fn process_state(pid: i32) -> Option<(String, i32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.to_string();
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Whether a process still runs (zombies do not count: they hold nothing
/// but a process-table entry until they are reaped).
fn is_running(pid: i32) -> bool {
    process_state(pid).is_some_and(|(state, _)| state != "Z")
}

/// Every process below `root`, by parentage.
fn descendants_of(root: i32) -> Vec<i32> {
    let processes: Vec<(i32, i32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(|pid| Some((pid, process_state(pid)?.1)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &processes {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// The lines of a Bochs log that explain a failure: failed VM entries (with
/// the reason, which real hardware never gives) and emulator panics.
pub fn vm_entry_failures(bochs_log: &str) -> Vec<&str> {
    bochs_log
        .lines()
        .filter(|line| line.contains("VMENTER FAIL") || line.contains("VMFAIL") || line.contains("PANIC"))
        .collect()
}

/// Resolves the addresses of the shim's backtraces with addr2line, one
/// line per address listing the inlined functions innermost first.
pub fn resolve_backtraces(console: &str, shim_elf: &Path) -> String {
    let addresses: Vec<&str> = console
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            line.starts_with('#').then(|| line.split_whitespace().nth(1)).flatten()
        })
        .filter(|word| word.starts_with("0x"))
        .collect();
    if addresses.is_empty() {
        return String::new();
    }
    let Ok(output) =
        Command::new("addr2line").args(["-a", "-i", "-f", "-C", "-e"]).arg(shim_elf).args(&addresses).output()
    else {
        return String::new();
    };
    // With -a, each address starts a group of (function, location) pairs.
    let mut resolved = String::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if line.starts_with("0x") {
            if !resolved.is_empty() {
                resolved.push('\n');
            }
            resolved.push_str(line);
        } else if !line.contains('/') && !line.starts_with("??:") {
            let _ = write!(resolved, " {line}");
        }
    }
    resolved.push('\n');
    resolved
}

fn bochs_command(
    image: &BootImage,
    config: &MachineConfig,
    cpu_model: &str,
    dir: &Path,
    serial: &Path,
) -> Result<Command, String> {
    let memory = if config.memory_mib <= 2048 {
        format!("megs: {}", config.memory_mib)
    } else {
        format!("memory: guest={}, host=2048", config.memory_mib)
    };
    // `sound: driver=dummy`: without it Bochs's mixer thread talks to ALSA,
    // which on a machine without a sound card can abort Bochs at start-up
    // ("buffer overflow detected" in mixer_thread).
    let rc = format!(
        "{memory}
cpu: model={cpu_model}, count=1, ips={BOCHS_IPS}, reset_on_triple_fault=0
clock: sync=none, time0=local
romimage: file=/usr/share/bochs/BIOS-bochs-latest, options=fastboot
vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev={serial}
magic_break: enabled=1
display_library: term
speaker: enabled=0
sound: driver=dummy
log: {log}
panic: action=fatal
error: action=report
info: action=ignore
",
        iso = image.iso.display(),
        serial = serial.display(),
        log = dir.join("bochs.log").display(),
    );
    let rc = match &config.network {
        Some(HostForward { nic: NicModel::E1000e, .. }) => return Err("Bochs emulates no 82574L (e1000e)".into()),
        Some(forward) => {
            let slirp = dir.join("slirp.conf");
            // Bochs refuses a script whose first line is not "# slirp config".
            // `restricted`: the machine reaches nothing beyond the emulator's own network.
            let script = format!(
                "# slirp config\nrestricted = 1\nnet = 10.0.2.0/24\nhost = 10.0.2.2\ndhcpstart = 10.0.2.15\nhostfwd = tcp:127.0.0.1:{}-:{}\n",
                forward.host_port, forward.guest_port
            );
            fs::write(&slirp, script).map_err(|error| format!("writing {}: {error}", slirp.display()))?;
            format!(
                "{rc}pci: enabled=1, chipset=i440fx, slot1=e1000\ne1000: enabled=1, mac={NIC_MAC}, ethmod=slirp, script={}\n",
                slirp.display()
            )
        }
        None => rc,
    };
    let rc_path = dir.join("bochsrc");
    fs::write(&rc_path, rc).map_err(|error| format!("writing {}: {error}", rc_path.display()))?;
    // The debugger is compiled into Debian's Bochs and stops before the
    // first instruction: continue, and quit at the shim's magic breakpoint.
    let commands = dir.join("bochs-commands");
    fs::write(&commands, "c\nquit\n").map_err(|error| format!("writing {}: {error}", commands.display()))?;
    // The term display needs a terminal; `script` gives it a pty.
    let mut command = Command::new("script");
    command
        .args(["-qfec"])
        .arg(format!("bochs -q -f {} -rc {}", rc_path.display(), commands.display()))
        .arg("/dev/null");
    Ok(command)
}

fn qemu_command(image: &BootImage, config: &MachineConfig, serial: &Path) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args(["-m", &config.memory_mib.to_string(), "-cdrom"])
        .arg(&image.iso)
        .args(["-boot", "d", "-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()));
    match &config.network {
        Some(forward) => {
            let netdev =
                format!("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{}-:{}", forward.host_port, forward.guest_port);
            let device = match forward.nic {
                NicModel::E1000 => "e1000",
                NicModel::E1000e => "e1000e",
            };
            command.args(["-netdev", &netdev, "-device", &format!("{device},netdev=net0,mac={NIC_MAC}")]);
        }
        // QEMU's PC has an e1000 unless told otherwise.
        None => {
            command.args(["-nic", "none"]);
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_entry_failures_are_picked_out_of_the_bochs_log() {
        let log = "00000000000i[CPU0  ] CPU is in long mode\n\
                   01234567890e[CPU0  ] VMENTER FAIL: VMCS guest invalid CR0\n\
                   01234567891i[CPU0  ] something harmless\n\
                   01234567892p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution\n";
        assert_eq!(
            vm_entry_failures(log),
            [
                "01234567890e[CPU0  ] VMENTER FAIL: VMCS guest invalid CR0",
                "01234567892p[CPU0  ] >>PANIC<< exception(): 3rd (13) exception with no resolution",
            ]
        );
        assert!(vm_entry_failures("all is well\n").is_empty());
    }
}
