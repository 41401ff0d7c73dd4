//! The x86 exception vectors (SDM vol. 3A, table 6-1).

/// Mnemonic and name of each exception vector, 0 to 31.
pub const EXCEPTIONS: [(&str, &str); 32] = [
    ("#DE", "divide error"),
    ("#DB", "debug"),
    ("NMI", "non-maskable interrupt"),
    ("#BP", "breakpoint"),
    ("#OF", "overflow"),
    ("#BR", "bound range exceeded"),
    ("#UD", "invalid opcode"),
    ("#NM", "device not available"),
    ("#DF", "double fault"),
    ("vector 9", "coprocessor segment overrun"),
    ("#TS", "invalid TSS"),
    ("#NP", "segment not present"),
    ("#SS", "stack-segment fault"),
    ("#GP", "general protection"),
    ("#PF", "page fault"),
    ("vector 15", "reserved"),
    ("#MF", "x87 floating-point error"),
    ("#AC", "alignment check"),
    ("#MC", "machine check"),
    ("#XM", "SIMD floating-point exception"),
    ("#VE", "virtualization exception"),
    ("#CP", "control protection"),
    ("vector 22", "reserved"),
    ("vector 23", "reserved"),
    ("vector 24", "reserved"),
    ("vector 25", "reserved"),
    ("vector 26", "reserved"),
    ("vector 27", "reserved"),
    ("#HV", "hypervisor injection"),
    ("#VC", "VMM communication"),
    ("#SX", "security exception"),
    ("vector 31", "reserved"),
];

/// The mnemonic of a vector (`#GP`); `interrupt` above 31.
pub fn mnemonic(vector: u8) -> &'static str {
    EXCEPTIONS.get(usize::from(vector)).map_or("interrupt", |(mnemonic, _)| mnemonic)
}

/// The name of a vector ("general protection"); `interrupt` above 31.
pub fn name(vector: u8) -> &'static str {
    EXCEPTIONS.get(usize::from(vector)).map_or("interrupt", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_have_their_sdm_names() {
        assert_eq!((mnemonic(13), name(13)), ("#GP", "general protection"));
        assert_eq!((mnemonic(14), name(14)), ("#PF", "page fault"));
        assert_eq!(mnemonic(2), "NMI");
        assert_eq!(mnemonic(21), "#CP");
        assert_eq!((mnemonic(32), name(255)), ("interrupt", "interrupt"));
    }
}
