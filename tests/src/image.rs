//! Boot images: a GRUB ISO with the shim, its command line, a boot
//! configuration and the modules that configuration names; or, for a
//! kernel that runs on the machine itself (the L1 test hypervisor on
//! Bochs's VMX, Linux with KVM as the reference L0), a GRUB ISO with that
//! multiboot kernel, or that bzImage and its initrd, alone.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::workspace;

/// The boot module name the shim looks for (l0-shim's kernel::monitor).
pub const MONITOR_MODULE: &str = "matryoshka-monitor";

/// The console line with which the shim ends the machine in order.
pub const SHIM_STOPPING: StoppingLines =
    StoppingLines { success: "shim: stopping (success)", failure: "shim: stopping (failure)" };

/// The console lines that say the booted kernel itself ended the machine,
/// with success or failure; anything else is a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoppingLines {
    pub success: &'static str,
    pub failure: &'static str,
}

/// How the booted kernel ends the emulator, which decides what the
/// emulator's exit status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndsBy {
    /// Success and failure end the emulator differently: Bochs's magic
    /// breakpoint or shutdown port, QEMU's debug-exit codes.
    ExitCode,
    /// ACPI power-off (Linux's `poweroff -f`): the emulator's status is the
    /// same either way, so only the stopping lines tell them apart.
    PowerOff,
}

/// A boot image ready for an emulator.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub iso: PathBuf,
    /// The booted kernel's ELF with its debug info (the shim's, unless the
    /// image boots a kernel directly), for resolving backtraces.
    pub shim_elf: PathBuf,
    pub stopping: StoppingLines,
    pub ends_by: EndsBy,
}

/// A kernel booted directly instead of the shim.
#[derive(Debug, Clone)]
struct BareKernel {
    /// What the loader loads (ELF32 for multiboot loaders).
    image: PathBuf,
    /// The same kernel with debug info.
    elf: PathBuf,
    stopping: StoppingLines,
    /// Some for a Linux bzImage (with its initrd), None for multiboot.
    linux_initrd: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct ImageBuilder {
    command_line: Vec<String>,
    config: Option<(String, String)>,
    modules: Vec<(String, PathBuf)>,
    bare: Option<BareKernel>,
}

impl ImageBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An image for the scenario `images/scenarios/NAME`, with every module
    /// its guests name taken from `build/guests/` or `images/`.
    pub fn scenario(name: &str) -> Result<Self, String> {
        let path = workspace::scenarios_dir().join(name);
        let text = fs::read_to_string(&path).map_err(|error| {
            format!("scenario '{name}': cannot read {}: {error} (scenarios: {})", path.display(), list_scenarios())
        })?;
        let module_name = format!("scenarios/{name}");
        let mut builder = Self::new().config(&module_name, &text);
        for module in modules_named_by(&module_name, &text) {
            workspace::ensure_module_built(&module)?;
            let file = find_module_file(&module).ok_or_else(|| {
                format!(
                    "scenario '{name}' needs the module '{module}', which is neither in {} nor in {}",
                    workspace::guest_build_dir().display(),
                    workspace::root().join("images").display()
                )
            })?;
            builder = builder.module(&module, file);
        }
        Ok(builder)
    }

    /// An image that boots the multiboot kernel `image` directly, without
    /// the shim (`elf`: the same kernel with debug info). Its command line
    /// is the kernel's; it ends the machine by printing one of `stopping`.
    pub fn bare_kernel(image: PathBuf, elf: PathBuf, stopping: StoppingLines) -> Self {
        Self { bare: Some(BareKernel { image, elf, stopping, linux_initrd: None }), ..Self::default() }
    }

    /// An image that boots the Linux `bzimage` with `initrd` directly,
    /// without the shim, through GRUB's `linux` and `initrd`. Its command
    /// line is the kernel's; it powers the machine off after printing one
    /// of `stopping`.
    pub fn bare_linux(bzimage: PathBuf, initrd: PathBuf, stopping: StoppingLines) -> Self {
        let bare = BareKernel { elf: bzimage.clone(), image: bzimage, stopping, linux_initrd: Some(initrd) };
        Self { bare: Some(bare), ..Self::default() }
    }

    /// Words for the shim's command line (see l0-shim/src/boot_options.rs),
    /// or for a bare kernel's.
    pub fn command_line(mut self, words: &str) -> Self {
        self.command_line.extend(words.split_whitespace().map(str::to_string));
        self
    }

    /// The boot configuration, as a module called `name`.
    pub fn config(mut self, name: &str, text: &str) -> Self {
        self.config = Some((name.to_string(), text.to_string()));
        self
    }

    pub fn module(mut self, name: &str, file: PathBuf) -> Self {
        self.modules.push((name.to_string(), file));
        self
    }

    /// Writes the ISO into `dir` (which must be private to the caller).
    pub fn build(&self, dir: &Path) -> Result<BootImage, String> {
        if let Some(bare) = &self.bare {
            return self.build_bare(bare, dir);
        }
        let shim = workspace::shim_elf()?;
        let tree = dir.join("iso");
        let modules_dir = tree.join("boot/modules");
        fs::create_dir_all(tree.join("boot/grub")).map_err(io_error("creating the ISO tree"))?;
        fs::create_dir_all(&modules_dir).map_err(io_error("creating the ISO tree"))?;
        // GRUB reads the image through emulated BIOS disk calls: without
        // its debug info the shim is 30x smaller and boots ~80M ticks sooner.
        // Backtraces are resolved against the full ELF.
        let stripped = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&shim)
            .arg(tree.join("boot/l0-shim.elf"))
            .status()
            .map_err(|error| format!("cannot run objcopy ({error}); run `make deps` to install binutils"))?;
        if !stripped.success() {
            return Err(format!("objcopy --strip-debug {} failed ({stripped})", shim.display()));
        }
        // Every image carries the monitor image, which the shim runs once
        // per guest.
        let monitor = workspace::monitor_elf()?;
        let stripped_monitor = dir.join(MONITOR_MODULE);
        let status = Command::new("objcopy")
            .arg("--strip-debug")
            .arg(&monitor)
            .arg(&stripped_monitor)
            .status()
            .map_err(|error| format!("cannot run objcopy ({error}); run `make deps` to install binutils"))?;
        if !status.success() {
            return Err(format!("objcopy --strip-debug {} failed ({status})", monitor.display()));
        }

        let mut command_line = self.command_line.clone();
        let mut modules: Vec<(String, PathBuf)> = vec![(MONITOR_MODULE.to_string(), stripped_monitor)];
        if let Some((name, text)) = &self.config {
            let file = dir.join("boot-config");
            fs::write(&file, text).map_err(io_error("writing the boot configuration"))?;
            command_line.push(format!("config={name}"));
            modules.push((name.clone(), file));
        }
        modules.extend(self.modules.iter().cloned());

        let mut grub = String::from("set timeout=0\nset default=0\nmenuentry \"Matryoshka\" {\n");
        let _ = writeln!(grub, "    multiboot2 /boot/l0-shim.elf {}", command_line.join(" "));
        for (index, (name, file)) in modules.iter().enumerate() {
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("module name '{name}' must be one word"));
            }
            fs::copy(file, modules_dir.join(index.to_string()))
                .map_err(io_error(&format!("copying module {}", file.display())))?;
            let _ = writeln!(grub, "    module2 /boot/modules/{index} {name}");
        }
        grub.push_str("    boot\n}\n");
        fs::write(tree.join("boot/grub/grub.cfg"), grub).map_err(io_error("writing grub.cfg"))?;
        let iso = make_iso(dir, &tree)?;
        Ok(BootImage { iso, shim_elf: shim, stopping: SHIM_STOPPING, ends_by: EndsBy::ExitCode })
    }

    /// A GRUB ISO that loads `bare` with multiboot (v1), or as Linux with
    /// its initrd, and nothing else.
    fn build_bare(&self, bare: &BareKernel, dir: &Path) -> Result<BootImage, String> {
        if self.config.is_some() || !self.modules.is_empty() {
            return Err("a bare kernel image takes no boot configuration or modules".to_string());
        }
        let tree = dir.join("iso");
        fs::create_dir_all(tree.join("boot/grub")).map_err(io_error("creating the ISO tree"))?;
        fs::copy(&bare.image, tree.join("boot/kernel"))
            .map_err(io_error(&format!("copying the kernel {}", bare.image.display())))?;
        let command_line = self.command_line.join(" ");
        let (load, ends_by) = match &bare.linux_initrd {
            Some(initrd) => {
                fs::copy(initrd, tree.join("boot/initrd"))
                    .map_err(io_error(&format!("copying the initrd {}", initrd.display())))?;
                (format!("linux /boot/kernel {command_line}\n    initrd /boot/initrd"), EndsBy::PowerOff)
            }
            None => (format!("multiboot /boot/kernel {command_line}"), EndsBy::ExitCode),
        };
        let grub = format!("set timeout=0\nset default=0\nmenuentry \"kernel\" {{\n    {load}\n    boot\n}}\n");
        fs::write(tree.join("boot/grub/grub.cfg"), grub).map_err(io_error("writing grub.cfg"))?;
        let iso = make_iso(dir, &tree)?;
        Ok(BootImage { iso, shim_elf: bare.elf.clone(), stopping: bare.stopping, ends_by })
    }
}

/// Runs grub-mkrescue on `tree`.
fn make_iso(dir: &Path, tree: &Path) -> Result<PathBuf, String> {
    let iso = dir.join("matryoshka.iso");
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(tree)
        .output()
        .map_err(|error| format!("cannot run grub-mkrescue ({error}); run `make deps` to install it"))?;
    if !output.status.success() {
        return Err(format!("grub-mkrescue failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr)));
    }
    Ok(iso)
}

/// The modules (kernels, ramdisks) the valid guests of a configuration name.
fn modules_named_by(file_name: &str, text: &str) -> Vec<String> {
    let parsed = matryoshka_config::parse(file_name, text);
    let mut names = Vec::new();
    for guest in &parsed.config.guests {
        for name in std::iter::once(&guest.kernel).chain(guest.ramdisk.as_ref()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

fn find_module_file(name: &str) -> Option<PathBuf> {
    [workspace::guest_build_dir().join(name), workspace::root().join("images").join(name)]
        .into_iter()
        .find(|path| path.is_file())
}

pub fn list_scenarios() -> String {
    let mut names: Vec<String> = fs::read_dir(workspace::scenarios_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.join(", ")
}

fn io_error(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |error| format!("{what}: {error}")
}
