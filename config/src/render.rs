//! A guest's configuration written back as a `[guest]` section.
//!
//! The shim hands each monitor its guest's configuration in this form: the
//! monitor parses it with the same parser, so both sides agree on every
//! value, and the monitor never sees the rest of the file (other tenants'
//! guests, the shim's tokens).

use alloc::format;
use alloc::string::String;
use core::fmt::Write;

use crate::GuestConfig;

impl GuestConfig {
    /// The section that parses back to this guest, except for what is not
    /// the guest's own business: its tenant and the lines it came from.
    pub fn to_section_text(&self) -> String {
        let mut text = String::from("[guest]\n");
        let _ = writeln!(text, "name = {}", quote(&self.name));
        let _ = writeln!(text, "memory = {}", self.memory_mib);
        let _ = writeln!(text, "vcpus = {}", self.vcpus);
        let _ = writeln!(text, "maxvcpus = {}", self.max_vcpus);
        let _ = writeln!(text, "kernel = {}", quote(&self.kernel));
        if let Some(ramdisk) = &self.ramdisk {
            let _ = writeln!(text, "ramdisk = {}", quote(ramdisk));
        }
        if !self.cmdline.is_empty() {
            let _ = writeln!(text, "cmdline = {}", quote(&self.cmdline));
        }
        let _ = writeln!(text, "nestedhvm = {}", u8::from(self.nested_hvm));
        if !self.cpuid.is_empty() {
            let masks: alloc::vec::Vec<String> = self.cpuid.masks().map(|mask| quote(&format!("{mask}"))).collect();
            let _ = writeln!(text, "cpuid = [ {} ]", masks.join(", "));
        }
        let _ = writeln!(text, "on_poweroff = {}", quote(self.on_poweroff.name()));
        let _ = writeln!(text, "on_reboot = {}", quote(self.on_reboot.name()));
        let _ = writeln!(text, "on_crash = {}", quote(self.on_crash.name()));
        text
    }
}

/// A double-quoted string with the escapes the lexer knows.
fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use crate::parse;

    fn round_trip(text: &str) {
        let parsed = parse("original.cfg", text);
        assert!(parsed.is_clean(), "{:?}", parsed.errors);
        for guest in &parsed.config.guests {
            let section = guest.to_section_text();
            let again = parse("section", &section);
            assert!(again.is_clean(), "{section}\n{:?}", again.errors);
            assert!(again.warnings.is_empty(), "{section}\n{:?}", again.warnings);
            assert_eq!(again.config.guests.len(), 1, "{section}");
            let mut expected = guest.clone();
            let mut got = again.config.guests[0].clone();
            expected.tenant = None;
            // Lines differ by construction.
            for config in [&mut expected, &mut got] {
                config.line = 0;
                config.kernel_line = 0;
                config.ramdisk_line = config.ramdisk_line.map(|_| 0);
            }
            assert_eq!(got, expected, "{section}");
        }
    }

    #[test]
    fn a_guest_section_parses_back_to_the_same_guest() {
        round_trip(
            "[shim]\ntokens = [ \"tenant=lab,secret=secret-token-0123456789\" ]\n\
             [guest]\nname = \"a\"\nmemory = 64\nvcpus = 2\nmaxvcpus = 4\nkernel = \"k\"\nramdisk = \"r\"\n\
             cmdline = \"console=ttyS0 quote=\\\"x\\\" back\\\\slash\"\nnestedhvm = 1\ntenant = \"lab\"\n\
             cpuid = [ '0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', '0x7,0:ebx=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx0' ]\n\
             on_crash = \"preserve\"\n\
             [guest]\nname = \"b\"\nmemory = 16\nkernel = \"k\"\n",
        );
    }

    #[test]
    fn the_section_leaves_out_the_tenant_and_everything_else_in_the_file() {
        let parsed = parse(
            "x.cfg",
            "[shim]\ntokens = [ \"tenant=lab,secret=secret-token-0123456789\" ]\n[guest]\nname = \"a\"\nmemory = 16\nkernel = \"k\"\ntenant = \"lab\"\n\
             [guest]\nname = \"other\"\nmemory = 16\nkernel = \"k\"\n",
        );
        assert!(parsed.is_clean(), "{:?}", parsed.errors);
        let section = parsed.config.guests[0].to_section_text();
        for absent in ["secret", "lab", "tenant", "other", "[shim]"] {
            assert!(!section.contains(absent), "'{absent}' in {section}");
        }
    }
}
