//! VMREAD and VMWRITE bitmaps for VMCS shadowing (SDM 25.6.15): which of
//! L1's VMREADs and VMWRITEs a shadow VMCS could serve without an exit.
//!
//! Not used yet: L1 is not offered VMCS shadowing and L0 does not use it
//! for L1 either, so every VMREAD and VMWRITE of L1 exits and is emulated
//! on vmcs12 in memory. When L0 adopts shadowing, these bitmaps say which
//! fields the shadow VMCS may hold: every supported field for VMREAD, the
//! supported writable ones for VMWRITE (writes to exit-information fields
//! still exit, so that the emulated VMWRITE-any-field rule applies), and
//! nothing vmcs12 does not support, so that such accesses still fail as
//! unsupported components.

use vmx::vmcs::Encoding;

use super::vmcs12::SUPPORTED_FIELDS;

/// Bytes of a VMREAD or VMWRITE bitmap: one bit per encoding 0..=0x7fff.
pub const BITMAP_BYTES: usize = 4096;

/// A bitmap in which a set bit makes the access exit.
pub type Bitmap = [u8; BITMAP_BYTES];

fn bitmap(pass: impl Fn(Encoding) -> bool) -> Bitmap {
    let mut bitmap = [0xff; BITMAP_BYTES];
    for &encoding in SUPPORTED_FIELDS {
        let full = Encoding(encoding);
        let high = full.high();
        for access in core::iter::once(full).chain(high) {
            if pass(access) {
                if let Some(bit) = access.shadow_bitmap_bit() {
                    bitmap[usize::from(bit / 8)] &= !(1 << (bit % 8));
                }
            }
        }
    }
    bitmap
}

/// The VMREAD bitmap: every supported field is readable from the shadow.
pub fn vmread_bitmap() -> Bitmap {
    bitmap(|_| true)
}

/// The VMWRITE bitmap: supported fields except VM-exit information.
pub fn vmwrite_bitmap() -> Bitmap {
    bitmap(|encoding| !encoding.is_read_only())
}

/// Whether `bitmap` lets an access to `encoding` through.
pub fn passes(bitmap: &Bitmap, encoding: u32) -> bool {
    match Encoding(encoding).shadow_bitmap_bit() {
        Some(bit) => bitmap[usize::from(bit / 8)] & (1 << (bit % 8)) == 0,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_for_supported_fields_and_writes_skip_exit_information() {
        let read = vmread_bitmap();
        let write = vmwrite_bitmap();
        // Guest RIP: both pass. Exit reason: read only.
        assert!(passes(&read, 0x681e) && passes(&write, 0x681e));
        assert!(passes(&read, 0x4402) && !passes(&write, 0x4402));
        // The high half of the EPTP passes, as its full access does.
        assert!(passes(&read, 0x201b) && passes(&write, 0x201b));
        // Unsupported fields (PML address, TPR threshold) and encodings
        // with bits 31:15 set always exit.
        assert!(!passes(&read, 0x200e) && !passes(&write, 0x401c));
        assert!(!passes(&read, 0x1_681e));
        // Exactly the supported fields (with high halves) pass reads.
        let passing: usize = read.iter().map(|byte| byte.count_zeros() as usize).sum();
        let high_halves = SUPPORTED_FIELDS.iter().filter(|&&e| Encoding(e).high().is_some()).count();
        assert_eq!(passing, SUPPORTED_FIELDS.len() + high_halves);
    }
}
