//! XSAVE area sizes (CPUID leaf 0xD), which depend on the guest's XCR0.

use super::bits::xstate;

/// The legacy FXSAVE region (512 bytes) and the XSAVE header (64 bytes):
/// the XSAVE area holds them whatever XCR0 enables.
pub const LEGACY_AND_HEADER_BYTES: u32 = 512 + 64;

/// Components 0 and 1 (x87, SSE) live in the legacy region, not at an
/// offset of their own.
const LEGACY_COMPONENTS: u64 = xstate::X87 | xstate::SSE;

/// One state component, from CPUID.(0xD, i).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Component {
    /// EAX: bytes the component takes.
    size: u32,
    /// EBX: where it sits in the standard (non-compacted) format.
    offset: u32,
    /// ECX bit 1: 64-byte aligned in the compacted format.
    aligned: bool,
}

/// Where each user state component sits, as the host's CPUID describes it.
///
/// The sizes are computed for any XCR0 the hardware accepts, not only for
/// the components the default policy offers, so that a guest shown more by
/// a `k` mask still reads sizes that match what its XSAVE writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XsaveLayout {
    components: [Component; 64],
    /// The components the host describes (its CPUID.(0xD,0) EDX:EAX).
    host_components: u64,
}

impl XsaveLayout {
    /// Reads CPUID.(0xD, i) through `host_subleaf(i)` for every user
    /// component in `host_components`.
    pub fn from_host(host_components: u64, host_subleaf: impl Fn(u32) -> [u32; 4]) -> Self {
        let mut components = [Component::default(); 64];
        for (number, component) in components.iter_mut().enumerate().skip(2) {
            if host_components & (1 << number) != 0 {
                let [size, offset, flags, _] = host_subleaf(number as u32);
                *component = Component { size, offset, aligned: flags & (1 << 1) != 0 };
            }
        }
        Self { components, host_components }
    }

    /// CPUID.(0xD,0):EBX for `enabled` (XCR0): the standard-format area
    /// ends after the component that ends last.
    pub fn standard_size(&self, enabled: u64) -> u32 {
        self.extended_components(enabled)
            .map(|component| component.offset.saturating_add(component.size))
            .fold(LEGACY_AND_HEADER_BYTES, u32::max)
    }

    /// CPUID.(0xD,1):EBX for `enabled` (XCR0 | IA32_XSS): in the compacted
    /// format the components follow each other in number order, each
    /// aligned to 64 bytes if its ECX bit 1 says so.
    pub fn compacted_size(&self, enabled: u64) -> u32 {
        self.extended_components(enabled).fold(LEGACY_AND_HEADER_BYTES, |end, component| {
            let start = if component.aligned { end.saturating_add(63) & !63 } else { end };
            start.saturating_add(component.size)
        })
    }

    /// The components 2..63 of `enabled` that the host describes.
    fn extended_components(&self, enabled: u64) -> impl Iterator<Item = Component> + '_ {
        let enabled = enabled & self.host_components & !LEGACY_COMPONENTS;
        self.components.iter().enumerate().filter(move |(number, _)| enabled & (1 << number) != 0).map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x87, SSE, AVX (256 bytes at 576), opmask (64 at 1088, aligned) and
    /// PKRU (8 at 2688).
    fn layout() -> XsaveLayout {
        let host_components = xstate::X87 | xstate::SSE | xstate::AVX | xstate::OPMASK | xstate::PKRU;
        XsaveLayout::from_host(host_components, |number| match number {
            2 => [256, 576, 0, 0],
            5 => [64, 1088, 0b10, 0],
            9 => [8, 2688, 0, 0],
            _ => [0xdead, 0xbeef, 0, 0],
        })
    }

    #[test]
    fn only_x87_and_sse_take_the_legacy_region_and_header() {
        assert_eq!(layout().standard_size(xstate::X87), 576);
        assert_eq!(layout().standard_size(xstate::X87 | xstate::SSE), 576);
        assert_eq!(layout().compacted_size(xstate::X87 | xstate::SSE), 576);
    }

    #[test]
    fn the_standard_size_ends_with_the_last_component() {
        let layout = layout();
        assert_eq!(layout.standard_size(0b111), 576 + 256);
        assert_eq!(layout.standard_size(0b111 | xstate::PKRU), 2696);
        // Components the host does not describe do not count.
        assert_eq!(layout.standard_size(0b111 | xstate::MPX_BNDREGS), 832);
    }

    #[test]
    fn the_compacted_size_packs_components_in_number_order() {
        // 576 + 256 (AVX) = 832; + 64 (opmask, 832 is aligned) = 896; + 8 (PKRU).
        assert_eq!(layout().compacted_size(0b111 | xstate::OPMASK | xstate::PKRU), 904);
        // Where the standard format leaves the gap of MPX, the compacted one does not.
        assert!(layout().standard_size(0b111 | xstate::OPMASK | xstate::PKRU) > 904);
    }

    #[test]
    fn an_aligned_component_starts_on_a_64_byte_boundary() {
        // PKRU (8 bytes) ends at 584; an aligned component 10 then starts at 640.
        let layout = XsaveLayout::from_host(0b11 | xstate::PKRU | 1 << 10, |number| match number {
            9 => [8, 2688, 0, 0],
            10 => [16, 2752, 0b10, 0],
            _ => [0; 4],
        });
        assert_eq!(layout.compacted_size(0b11 | xstate::PKRU), 584);
        assert_eq!(layout.compacted_size(0b11 | xstate::PKRU | 1 << 10), 640 + 16);
        assert_eq!(layout.compacted_size(0b11 | 1 << 10), 576 + 16);
    }
}
