//! The command line.

use std::path::PathBuf;

use clap::Parser;

use crate::layout::{MAX_RAM_MIB, MIN_RAM_MIB};

/// Runs one guest under KVM: a Linux bzImage or a multiboot (v1) ELF kernel,
/// with COM1 on stdout. Exit status: (V << 1) | 1 when the guest writes V to
/// port 0xf4; 0 when the guest resets the machine; 2 for a VMM error
/// (arguments, kernel file, KVM); 4 when the guest crashes (triple fault,
/// failed VM entry, KVM internal error).
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(name = "matryoshka-vmm", version)]
pub struct Args {
    /// The guest kernel: a Linux bzImage or a multiboot (v1) ELF kernel.
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// Linux only: the initial ramdisk.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Multiboot only: a boot module (repeatable); its string is its path.
    #[arg(long, value_name = "FILE")]
    pub module: Vec<PathBuf>,
    /// The guest's command line (for multiboot kernels, after the kernel's name).
    #[arg(long, value_name = "STR", default_value = "")]
    pub cmdline: String,
    /// Guest RAM in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 64, value_parser = parse_mem)]
    pub mem: u64,
    /// vCPUs (only 1 for now).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_cpus)]
    pub cpus: u8,
    /// Show VMX to the guest (CPUID.1:ECX.VMX, as KVM supports it), so
    /// that it can be a hypervisor itself.
    #[arg(long)]
    pub nested: bool,
}

fn parse_mem(text: &str) -> Result<u64, String> {
    let mib: u64 = text.parse().map_err(|_| format!("'{text}' is not a number of MiB"))?;
    if (MIN_RAM_MIB..=MAX_RAM_MIB).contains(&mib) {
        Ok(mib)
    } else {
        Err(format!("{mib} MiB is outside {MIN_RAM_MIB}..={MAX_RAM_MIB} MiB (RAM stays below the 3 GiB MMIO window)"))
    }
}

fn parse_cpus(text: &str) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(1) => Ok(1),
        Ok(_) => Err(format!("{text} vCPUs: only 1 is supported for now")),
        Err(_) => Err(format!("'{text}' is not a number of vCPUs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("matryoshka-vmm").chain(words.iter().copied()))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_64_mib_one_cpu_no_vmx_empty_cmdline() {
        let args = parse(&["--kernel", "k"]).unwrap();
        assert_eq!(
            args,
            Args {
                kernel: "k".into(),
                initrd: None,
                module: vec![],
                cmdline: String::new(),
                mem: 64,
                cpus: 1,
                nested: false
            }
        );
    }

    #[test]
    fn every_option_is_taken() {
        let args = parse(&[
            "--kernel",
            "bz",
            "--initrd",
            "rd",
            "--cmdline",
            "console=ttyS0 quiet",
            "--mem",
            "128",
            "--cpus",
            "1",
            "--nested",
            "--module",
            "a",
            "--module",
            "b",
        ])
        .unwrap();
        assert_eq!(args.initrd, Some("rd".into()));
        assert_eq!(args.cmdline, "console=ttyS0 quiet");
        assert_eq!((args.mem, args.cpus, args.nested), (128, 1, true));
        assert_eq!(args.module, [PathBuf::from("a"), PathBuf::from("b")]);
    }

    #[test]
    fn bad_values_are_refused_with_what_was_wrong() {
        let error = parse(&["--kernel", "k", "--cpus", "2"]).unwrap_err();
        assert!(error.contains("2 vCPUs: only 1 is supported for now"), "{error}");
        let error = parse(&["--kernel", "k", "--mem", "4096"]).unwrap_err();
        assert!(error.contains("4096 MiB is outside 4..=3072 MiB"), "{error}");
        let error = parse(&["--kernel", "k", "--mem", "lots"]).unwrap_err();
        assert!(error.contains("'lots' is not a number of MiB"), "{error}");
        let error = parse(&[]).unwrap_err();
        assert!(error.contains("--kernel <FILE>"), "{error}");
        let error = parse(&["--kernel", "k", "--net"]).unwrap_err();
        assert!(error.contains("unexpected argument '--net'"), "{error}");
    }
}
