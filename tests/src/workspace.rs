//! Where things are, and building the shim once per process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's top directory.
pub fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repository").to_path_buf()
    })
}

pub fn scenarios_dir() -> PathBuf {
    root().join("images/scenarios")
}

/// Where guest images built by the project land (later issues add them).
pub fn guest_build_dir() -> PathBuf {
    root().join("build/guests")
}

/// Builds the shim's kernel ELF (release, bare-metal configuration) once
/// per process and returns its path. Cargo makes repeated builds cheap.
pub fn shim_elf() -> Result<PathBuf, String> {
    shim_and_monitor().map(|(shim, _)| shim)
}

/// The monitor image's ELF, built with the shim.
pub fn monitor_elf() -> Result<PathBuf, String> {
    shim_and_monitor().map(|(_, monitor)| monitor)
}

fn shim_and_monitor() -> Result<(PathBuf, PathBuf), String> {
    static BUILT: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    BUILT.get_or_init(build_shim_and_monitor).clone()
}

/// One cargo run for both bare-metal programs: they share a target
/// directory, and one run takes its lock once.
fn build_shim_and_monitor() -> Result<(PathBuf, PathBuf), String> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["--config", ".cargo/bare-metal.toml", "build", "--release", "--quiet"])
        .args(["-p", "l0-shim", "-p", "monitor-image", "--features", "l0-shim/kernel,monitor-image/image"])
        // A cargo test run exports variables meant for the host build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|error| format!("cannot run cargo to build the shim: {error}"))?;
    if !status.success() {
        return Err(format!("building the shim and the monitor image failed ({status})"));
    }
    let built = root().join("target/bare/x86_64-unknown-linux-gnu/release");
    let (shim, monitor) = (built.join("l0-shim"), built.join("monitor-image"));
    for elf in [&shim, &monitor] {
        if !elf.is_file() {
            return Err(format!("the build succeeded but {} is missing", elf.display()));
        }
    }
    Ok((shim, monitor))
}

/// Builds the project's own guest kernels into `build/guests/` once per
/// process (the L1 test kernel and the L1 test hypervisor: `make guests`
/// does the same).
pub fn guest_kernels() -> Result<(), String> {
    static GUESTS: OnceLock<Result<(), String>> = OnceLock::new();
    GUESTS.get_or_init(build_guest_kernels).clone()
}

fn build_guest_kernels() -> Result<(), String> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["build", "--config", ".cargo/bare-metal.toml", "--release", "--quiet"])
        .args(["-p", "l1-test-kernel", "-p", "l1-hypervisor"])
        .args(["--features", "l1-test-kernel/image,l1-hypervisor/image"])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|error| format!("cannot run cargo to build the L1 guest kernels: {error}"))?;
    if !status.success() {
        return Err(format!("building the L1 test kernel and hypervisor failed ({status})"));
    }
    std::fs::create_dir_all(guest_build_dir()).map_err(|error| format!("creating build/guests: {error}"))?;
    for (crate_name, module) in [("l1-test-kernel", "l1-test"), ("l1-hypervisor", "l1-hypervisor")] {
        // QEMU's multiboot loader (and kvm-unit-tests conventions) want ELF32.
        let converted = Command::new("objcopy")
            .args(["-O", "elf32-i386", "--strip-debug"])
            .arg(bare_release_dir().join(crate_name))
            .arg(guest_build_dir().join(module))
            .status()
            .map_err(|error| format!("cannot run objcopy ({error}); run `make deps`"))?;
        if !converted.success() {
            return Err(format!("objcopy of {crate_name} failed ({converted})"));
        }
    }
    Ok(())
}

/// Where the bare-metal release builds land.
fn bare_release_dir() -> PathBuf {
    root().join("target/bare/x86_64-unknown-linux-gnu/release")
}

/// The L1 test hypervisor, built: the ELF32 in `build/guests/` that
/// loaders boot, and the ELF64 with debug information for backtraces.
pub fn l1_hypervisor() -> Result<(PathBuf, PathBuf), String> {
    guest_kernels()?;
    Ok((guest_build_dir().join("l1-hypervisor"), bare_release_dir().join("l1-hypervisor")))
}

/// Builds a boot module the project makes itself, if `name` is one:
/// `l1-test` (the L1 test kernel), `l1-hypervisor` (the L1 test
/// hypervisor) or `linux-bzimage`/`linux-initramfs` (images/linux, cached
/// outside the repository and copied here).
pub fn ensure_module_built(name: &str) -> Result<(), String> {
    match name {
        "l1-test" | "l1-hypervisor" => guest_kernels(),
        "linux-bzimage" | "linux-initramfs" => linux_images(),
        _ => Ok(()),
    }
}

/// Builds (or finds in the cache) the Linux kernel and initramfs once per
/// process and copies them into `build/guests/`.
pub fn linux_images() -> Result<(), String> {
    static LINUX: OnceLock<Result<(), String>> = OnceLock::new();
    LINUX.get_or_init(build_linux_images).clone()
}

fn build_linux_images() -> Result<(), String> {
    std::fs::create_dir_all(guest_build_dir()).map_err(|error| format!("creating build/guests: {error}"))?;
    for (script, module) in [("build-kernel.sh", "linux-bzimage"), ("build-initramfs.sh", "linux-initramfs")] {
        let output = Command::new(root().join("images/linux").join(script))
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|error| format!("cannot run images/linux/{script}: {error}"))?;
        if !output.status.success() {
            return Err(format!("images/linux/{script} failed ({})", output.status));
        }
        // The scripts print the cached file's path on their last line.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let built = stdout.lines().last().map(str::trim).unwrap_or_default().to_string();
        std::fs::copy(&built, guest_build_dir().join(module))
            .map_err(|error| format!("copying {built} (from images/linux/{script}): {error}"))?;
    }
    Ok(())
}

/// Builds matryoshka-vmm (images/vmm) as a static binary once per process
/// (`.cargo/vmm-static.toml`, as `make vmm` does) and returns its path.
pub fn vmm_static() -> Result<PathBuf, String> {
    static VMM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VMM.get_or_init(build_vmm_static).clone()
}

fn build_vmm_static() -> Result<PathBuf, String> {
    let status = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["build", "--config", ".cargo/vmm-static.toml", "--release", "--quiet", "-p", "matryoshka-vmm"])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .map_err(|error| format!("cannot run cargo to build matryoshka-vmm: {error}"))?;
    if !status.success() {
        return Err(format!("building the static matryoshka-vmm failed ({status})"));
    }
    let vmm = root().join("target/vmm/x86_64-unknown-linux-gnu/release/matryoshka-vmm");
    if !vmm.is_file() {
        return Err(format!("the build succeeded but {} is missing", vmm.display()));
    }
    Ok(vmm)
}

/// The Linux guest kernel and the initramfs variant that also holds
/// `/bin/matryoshka-vmm`, `/bin/vmm-run`, and under `/guests` the L1 test
/// kernel, the L1 test hypervisor and the same Linux kernel and default
/// initramfs, for a nested Linux (images/linux/extend-initramfs.sh, cached).
pub fn vmm_linux_images() -> Result<(PathBuf, PathBuf), String> {
    linux_images()?;
    guest_kernels()?;
    let vmm = vmm_static()?;
    let guests = guest_build_dir();
    let files = [
        (vmm, "bin/matryoshka-vmm"),
        (root().join("images/vmm/vmm-run.sh"), "bin/vmm-run"),
        (guests.join("l1-test"), "guests/l1-test"),
        (guests.join("l1-hypervisor"), "guests/l1-hypervisor"),
        (guests.join("linux-bzimage"), "guests/linux-bzimage"),
        (guests.join("linux-initramfs"), "guests/linux-initramfs"),
    ];
    let output = Command::new(root().join("images/linux/extend-initramfs.sh"))
        .arg("--base")
        .arg(guests.join("linux-initramfs"))
        .args(files.iter().map(|(source, destination)| format!("{}:{destination}", source.display())))
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run images/linux/extend-initramfs.sh: {error}"))?;
    if !output.status.success() {
        return Err(format!("images/linux/extend-initramfs.sh failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let archive = PathBuf::from(stdout.lines().last().map(str::trim).unwrap_or_default());
    Ok((guests.join("linux-bzimage"), archive))
}
