//! CPUID masks in Xen's "xend" syntax (the `cpuid` list of xl.cfg).
//!
//! An entry is `LEAF[,SUBLEAF]:REG=VALUE[,REG=VALUE...]`, where VALUE spells
//! the 32 bits of one register, most significant bit first, one character per
//! bit. The characters keep the meanings Xen documents for them:
//!
//! | char | [`MaskBit`]                   | the guest sees                                   |
//! |------|-------------------------------|--------------------------------------------------|
//! | `1`  | [`MaskBit::One`]              | 1                                                |
//! | `0`  | [`MaskBit::Zero`]             | 0                                                |
//! | `x`  | [`MaskBit::Default`]          | the default policy's bit ("a safe value")        |
//! | `k`  | [`MaskBit::Host`]             | the host's bit, unfiltered (at your own risk)    |
//! | `s`  | [`MaskBit::HostPreserved`]    | like `k`, and kept across save/restore/migration |

use crate::parser::Value;
use crate::report::quoted;
use alloc::collections::btree_map::Entry;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use core::fmt;

/// What one character of a mask does to one bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MaskBit {
    /// `x`: the value of Matryoshka's default policy (the host's value filtered
    /// by that policy).
    Default,
    /// `0`: forced to 0.
    Zero,
    /// `1`: forced to 1.
    One,
    /// `k`: the host's value, passed through unfiltered.
    Host,
    /// `s`: the host's value, like `k`; save/restore and migration keep the
    /// value the guest first saw (see [`CpuidMask::preserved_bits`]).
    HostPreserved,
}

impl MaskBit {
    pub fn from_char(character: char) -> Option<Self> {
        match character {
            'x' => Some(MaskBit::Default),
            '0' => Some(MaskBit::Zero),
            '1' => Some(MaskBit::One),
            'k' => Some(MaskBit::Host),
            's' => Some(MaskBit::HostPreserved),
            _ => None,
        }
    }

    pub fn as_char(self) -> char {
        match self {
            MaskBit::Default => 'x',
            MaskBit::Zero => '0',
            MaskBit::One => '1',
            MaskBit::Host => 'k',
            MaskBit::HostPreserved => 's',
        }
    }

    /// The bit the guest sees, given the host's bit and the default policy's.
    pub fn resolve(self, host_bit: bool, default_bit: bool) -> bool {
        match self {
            MaskBit::Default => default_bit,
            MaskBit::Zero => false,
            MaskBit::One => true,
            MaskBit::Host | MaskBit::HostPreserved => host_bit,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CpuidRegister {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

impl CpuidRegister {
    /// In the order CPUID results are passed around: `[eax, ebx, ecx, edx]`.
    pub const ALL: [CpuidRegister; 4] =
        [CpuidRegister::Eax, CpuidRegister::Ebx, CpuidRegister::Ecx, CpuidRegister::Edx];

    pub fn name(self) -> &'static str {
        match self {
            CpuidRegister::Eax => "eax",
            CpuidRegister::Ebx => "ebx",
            CpuidRegister::Ecx => "ecx",
            CpuidRegister::Edx => "edx",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        CpuidRegister::ALL.into_iter().find(|register| register.name() == name)
    }

    /// Position in `[eax, ebx, ecx, edx]`.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CpuidRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The bits of one register, indexed by bit number (index 0 is bit 0, the
/// last character of the written form).
pub type RegisterMask = [MaskBit; 32];

/// One entry of the `cpuid` list: the masks for one leaf (and subleaf).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuidMask {
    pub leaf: u32,
    /// `None` matches every subleaf of the leaf.
    pub subleaf: Option<u32>,
    /// Indexed by [`CpuidRegister::index`]; `None` leaves the register to the
    /// default policy.
    registers: [Option<RegisterMask>; 4],
}

impl CpuidMask {
    /// A mask that changes nothing until registers are set.
    pub fn new(leaf: u32, subleaf: Option<u32>) -> Self {
        CpuidMask { leaf, subleaf, registers: [None; 4] }
    }

    pub fn set_register(&mut self, register: CpuidRegister, bits: RegisterMask) {
        if let Some(slot) = self.registers.get_mut(register.index()) {
            *slot = Some(bits);
        }
    }

    pub fn register(&self, register: CpuidRegister) -> Option<&RegisterMask> {
        self.registers.get(register.index()).and_then(Option::as_ref)
    }

    /// The value the guest sees in `register`: each bit as its character
    /// says, or the default policy's whole value if the entry does not name
    /// the register.
    pub fn apply(&self, register: CpuidRegister, host: u32, default_policy: u32) -> u32 {
        let Some(bits) = self.register(register) else {
            return default_policy;
        };
        let mut value = 0;
        for (bit_number, bit) in bits.iter().enumerate() {
            let host_bit = host & (1 << bit_number) != 0;
            let default_bit = default_policy & (1 << bit_number) != 0;
            if bit.resolve(host_bit, default_bit) {
                value |= 1 << bit_number;
            }
        }
        value
    }

    /// The bits written `s`, whose value must survive save/restore and migration.
    pub fn preserved_bits(&self, register: CpuidRegister) -> u32 {
        self.register(register).map_or(0, |bits| {
            bits.iter()
                .enumerate()
                .filter(|(_, bit)| **bit == MaskBit::HostPreserved)
                .fold(0, |mask, (bit_number, _)| mask | 1 << bit_number)
        })
    }

    /// Reads one entry in xend syntax. The error says what is wrong, without
    /// repeating the entry (the caller names it).
    pub fn parse_xend(text: &str) -> Result<Self, String> {
        let Some((selector, settings)) = text.split_once(':') else {
            return Err("expected LEAF[,SUBLEAF]:REG=VALUE[,REG=VALUE...]".into());
        };
        let (leaf_text, subleaf_text) = match selector.split_once(',') {
            Some((leaf, subleaf)) => (leaf, Some(subleaf)),
            None => (selector, None),
        };
        let leaf = parse_leaf_number(leaf_text)
            .ok_or_else(|| format!("bad leaf number {}: write hex with 0x (like 0x7) or decimal", quoted(leaf_text)))?;
        let subleaf = match subleaf_text {
            None => None,
            Some(text) => Some(parse_leaf_number(text).ok_or_else(|| {
                format!("bad subleaf number {}: write hex with 0x (like 0x0) or decimal", quoted(text))
            })?),
        };
        let mut mask = CpuidMask::new(leaf, subleaf);
        for setting in settings.split(',') {
            let Some((name, value)) = setting.split_once('=') else {
                return Err(format!("expected REG=VALUE after the ':', got {}", quoted(setting)));
            };
            let register = CpuidRegister::from_name(name)
                .ok_or_else(|| format!("unknown register {}: use eax, ebx, ecx or edx", quoted(name)))?;
            if mask.register(register).is_some() {
                return Err(format!("register {register} is given twice"));
            }
            mask.set_register(register, parse_register_mask(register, value)?);
        }
        Ok(mask)
    }
}

/// `0x` and hex digits, or decimal digits, fitting in 32 bits.
fn parse_leaf_number(text: &str) -> Option<u32> {
    let (digits, radix) = match text.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    // from_str_radix alone would also take a sign.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // A leading 0 means octal to Xen's parser (strtoul with base 0).
    if radix == 10 && digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// 32 characters, most significant bit first.
fn parse_register_mask(register: CpuidRegister, value: &str) -> Result<RegisterMask, String> {
    let length = value.chars().count();
    if length != 32 {
        return Err(format!("value for {register} has {length} characters, expected 32"));
    }
    let mut bits = [MaskBit::Default; 32];
    for (position, (character, slot)) in value.chars().zip(bits.iter_mut().rev()).enumerate() {
        *slot = MaskBit::from_char(character).ok_or_else(|| {
            format!(
                "value for {register} has {} at position {position} (bit {}): use 1, 0, x, k or s",
                quoted(character.encode_utf8(&mut [0; 4])),
                31 - position
            )
        })?;
    }
    Ok(bits)
}

/// Writes the entry back in xend syntax, as it would appear in a config file.
impl fmt::Display for CpuidMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.leaf)?;
        if let Some(subleaf) = self.subleaf {
            write!(f, ",{subleaf:#x}")?;
        }
        let mut separator = ':';
        for register in CpuidRegister::ALL {
            if let Some(bits) = self.register(register) {
                write!(f, "{separator}{register}=")?;
                for bit in bits.iter().rev() {
                    write!(f, "{}", bit.as_char())?;
                }
                separator = ',';
            }
        }
        Ok(())
    }
}

/// A guest's `cpuid` list: at most one mask per (leaf, subleaf).
///
/// Kept ordered by (leaf, subleaf) so that the lookup on every CPUID exit,
/// and the duplicate check while reading, stay cheap however long the list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuidPolicy {
    masks: BTreeMap<(u32, Option<u32>), CpuidMask>,
}

impl CpuidPolicy {
    /// The masks by leaf, then subleaf (the whole-leaf mask first).
    pub fn masks(&self) -> impl Iterator<Item = &CpuidMask> {
        self.masks.values()
    }

    pub fn len(&self) -> usize {
        self.masks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// Adds a mask, unless one for the same (leaf, subleaf) is already
    /// there: then nothing changes. Returns whether the mask was added.
    #[must_use]
    pub fn add(&mut self, mask: CpuidMask) -> bool {
        match self.masks.entry((mask.leaf, mask.subleaf)) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(mask);
                true
            }
        }
    }

    /// The mask for this leaf and subleaf: one naming the subleaf wins over
    /// one for the whole leaf.
    pub fn mask_for(&self, leaf: u32, subleaf: u32) -> Option<&CpuidMask> {
        self.masks.get(&(leaf, Some(subleaf))).or_else(|| self.masks.get(&(leaf, None)))
    }

    /// What the guest sees for `CPUID(leaf, subleaf)` as `[eax, ebx, ecx, edx]`,
    /// given the host's values and the default policy's. Without a mask the
    /// default policy stands.
    pub fn apply(&self, leaf: u32, subleaf: u32, host: [u32; 4], default_policy: [u32; 4]) -> [u32; 4] {
        match self.mask_for(leaf, subleaf) {
            None => default_policy,
            Some(mask) => CpuidRegister::ALL
                .map(|register| mask.apply(register, host[register.index()], default_policy[register.index()])),
        }
    }

    /// The `s` bits for `CPUID(leaf, subleaf)` as `[eax, ebx, ecx, edx]`.
    pub fn preserved_bits(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        match self.mask_for(leaf, subleaf) {
            None => [0; 4],
            Some(mask) => CpuidRegister::ALL.map(|register| mask.preserved_bits(register)),
        }
    }
}

/// Reads a guest's `cpuid` list. Each error names the entry by its 1-based
/// position and text; the returned policy holds the entries that were valid.
pub(crate) fn read_cpuid_list(items: &[Value], mut error: impl FnMut(String)) -> CpuidPolicy {
    let mut policy = CpuidPolicy::default();
    let mut entry_numbers = BTreeMap::new();
    for (index, item) in items.iter().enumerate() {
        let entry_number = index + 1;
        let Value::Text(text) = item else {
            error(format!("cpuid entry {entry_number}: expected a string like '0x1:ecx=...', got {}", item.describe()));
            continue;
        };
        let named = |problem: &str| format!("cpuid entry {entry_number} {}: {problem}", quoted(text));
        let mask = match CpuidMask::parse_xend(text) {
            Ok(mask) => mask,
            Err(problem) => {
                error(named(&problem));
                continue;
            }
        };
        let selector = (mask.leaf, mask.subleaf);
        if policy.add(mask) {
            entry_numbers.insert(selector, entry_number);
        } else {
            let first = entry_numbers.get(&selector).copied().unwrap_or(0);
            let described = match selector {
                (leaf, None) => format!("leaf {leaf:#x}"),
                (leaf, Some(subleaf)) => format!("leaf {leaf:#x} subleaf {subleaf:#x}"),
            };
            error(named(&format!("{described} is already given by entry {first}")));
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A mask string with `character` at `position` and `rest` elsewhere.
    fn with_char_at(rest: char, position: usize, character: char) -> String {
        (0..32).map(|p| if p == position { character } else { rest }).collect()
    }

    fn mask(text: &str) -> CpuidMask {
        CpuidMask::parse_xend(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn parse_error(text: &str) -> String {
        match CpuidMask::parse_xend(text) {
            Ok(mask) => panic!("{text} parsed as {mask:?}"),
            Err(message) => message,
        }
    }

    #[test]
    fn xen_wiki_example_clears_the_hypervisor_bit_only() {
        let mask = mask("0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_eq!((mask.leaf, mask.subleaf), (1, None));
        // Every bit set in the default policy except bit 31 survives.
        assert_eq!(mask.apply(CpuidRegister::Ecx, 0, 0xffff_ffff), 0x7fff_ffff);
        assert_eq!(mask.apply(CpuidRegister::Ecx, 0xffff_ffff, 0x8000_1234), 0x0000_1234);
        // 'x' follows the default policy, not the host.
        assert_eq!(mask.apply(CpuidRegister::Ecx, 0xffff_ffff, 0), 0);
        // Registers the entry does not name keep the default policy value.
        assert_eq!(mask.apply(CpuidRegister::Edx, 0x1111, 0x2222), 0x2222);
        assert_eq!(mask.apply(CpuidRegister::Eax, 0x1111, 0xabcd), 0xabcd);
    }

    #[test]
    fn each_character_means_what_xen_documents() {
        let host = 0b1100;
        let default_policy = 0b1010;
        // The last four characters are bits 3..0.
        let mask = mask("0x7:ebx=0000000000000000000000000000xxxx,ecx=0000000000000000000000000000kkkk,edx=0000000000000000000000000000ssss,eax=11111111111111111111111111110000");
        assert_eq!(mask.apply(CpuidRegister::Ebx, host, default_policy), default_policy);
        assert_eq!(mask.apply(CpuidRegister::Ecx, host, default_policy), host);
        assert_eq!(mask.apply(CpuidRegister::Edx, host, default_policy), host);
        assert_eq!(mask.apply(CpuidRegister::Eax, host, default_policy), 0xffff_fff0);
        // '1' and '0' ignore both inputs.
        assert_eq!(mask.apply(CpuidRegister::Eax, 0, 0), 0xffff_fff0);
        assert_eq!(mask.apply(CpuidRegister::Eax, u32::MAX, u32::MAX), 0xffff_fff0);
    }

    #[test]
    fn the_first_character_is_bit_31_and_the_last_is_bit_0() {
        for position in 0..32 {
            let bit = 31 - position;
            let one = mask(&format!("1:eax={}", with_char_at('0', position, '1')));
            assert_eq!(one.apply(CpuidRegister::Eax, 0, 0), 1 << bit, "position {position}");
            assert_eq!(one.register(CpuidRegister::Eax).unwrap()[bit], MaskBit::One);
            let zero = mask(&format!("1:eax={}", with_char_at('1', position, '0')));
            assert_eq!(zero.apply(CpuidRegister::Eax, 0, 0), !(1 << bit), "position {position}");
            let host = mask(&format!("1:eax={}", with_char_at('0', position, 'k')));
            assert_eq!(host.apply(CpuidRegister::Eax, u32::MAX, 0), 1 << bit);
            assert_eq!(host.apply(CpuidRegister::Eax, 0, u32::MAX), 0);
        }
    }

    #[test]
    fn preserved_bits_are_the_s_bits() {
        let mask = mask("0xd,1:eax=s000000000000000000000000000000s,ecx=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk");
        assert_eq!(mask.preserved_bits(CpuidRegister::Eax), 0x8000_0001);
        assert_eq!(mask.preserved_bits(CpuidRegister::Ecx), 0);
        assert_eq!(mask.preserved_bits(CpuidRegister::Edx), 0);
        let mut policy = CpuidPolicy::default();
        assert!(policy.add(mask));
        assert_eq!(policy.preserved_bits(0xd, 1), [0x8000_0001, 0, 0, 0]);
        assert_eq!(policy.preserved_bits(0xd, 0), [0; 4]);
    }

    #[test]
    fn leaf_and_subleaf_numbers() {
        assert_eq!(mask("0x80000001:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").leaf, 0x8000_0001);
        assert_eq!(mask("13:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").leaf, 13);
        assert_eq!(mask("0:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").leaf, 0);
        let with_subleaf = mask("0x7,0x1:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_eq!((with_subleaf.leaf, with_subleaf.subleaf), (7, Some(1)));
        assert_eq!(mask("7,0:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx").subleaf, Some(0));
    }

    #[test]
    fn entry_errors_name_the_problem() {
        let x32 = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        for (text, expected) in [
            (String::from("0x1"), String::from("expected LEAF[,SUBLEAF]:REG=VALUE")),
            (format!("0x:eax={x32}"), String::from("bad leaf number '0x'")),
            (format!("-1:eax={x32}"), String::from("bad leaf number '-1'")),
            (format!("+1:eax={x32}"), String::from("bad leaf number '+1'")),
            (format!("010:eax={x32}"), String::from("bad leaf number '010'")),
            (format!("0x100000000:eax={x32}"), String::from("bad leaf number")),
            (format!("0x7,a:eax={x32}"), String::from("bad subleaf number 'a'")),
            (format!("0x7,:eax={x32}"), String::from("bad subleaf number ''")),
            (String::from("0x1:"), String::from("expected REG=VALUE after the ':', got ''")),
            (format!("0x1:eax={x32},"), String::from("expected REG=VALUE after the ':', got ''")),
            (format!("0x1:esi={x32}"), String::from("unknown register 'esi': use eax, ebx, ecx or edx")),
            (format!("0x1:EAX={x32}"), String::from("unknown register 'EAX'")),
            (format!("0x1:ecx={x32},ecx={x32}"), String::from("register ecx is given twice")),
            (
                String::from("0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
                String::from("value for ecx has 31 characters, expected 32"),
            ),
            (format!("0x1:edx={x32}x"), String::from("value for edx has 33 characters, expected 32")),
            (
                format!("0x1:eax={}", with_char_at('x', 5, 'y')),
                String::from("value for eax has 'y' at position 5 (bit 26): use 1, 0, x, k or s"),
            ),
            (format!("0x1:eax={}", with_char_at('x', 31, 'X')), String::from("'X' at position 31 (bit 0)")),
            (format!("0x1:eax={}", with_char_at('x', 0, 'é')), String::from("'é' at position 0 (bit 31)")),
        ] {
            let message = parse_error(&text);
            assert!(message.contains(&expected), "{text}: got {message:?}, expected {expected:?}");
        }
    }

    #[test]
    fn display_writes_xend_syntax_back() {
        for text in [
            "0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "0x7,0x0:eax=10xksxxxxxxxxxxxxxxxxxxxxxxxxxxx,edx=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk1",
        ] {
            assert_eq!(mask(text).to_string(), text);
        }
        // Registers come out in eax..edx order, leaves in hex.
        assert_eq!(
            mask("13:edx=11111111111111111111111111111111,eax=00000000000000000000000000000000").to_string(),
            "0xd:eax=00000000000000000000000000000000,edx=11111111111111111111111111111111"
        );
    }

    #[test]
    fn a_subleaf_mask_takes_precedence_over_the_whole_leaf() {
        let mut policy = CpuidPolicy::default();
        assert!(policy.add(mask("0x7:ebx=11111111111111111111111111111111")));
        assert!(policy.add(mask("0x7,0x1:eax=00000000000000000000000000000001")));
        let host = [0xa, 0xb, 0xc, 0xd];
        let default_policy = [1, 2, 3, 4];
        assert_eq!(policy.mask_for(7, 1).and_then(|m| m.subleaf), Some(1));
        assert_eq!(policy.mask_for(7, 0).map(|m| m.subleaf), Some(None));
        assert!(policy.mask_for(8, 0).is_none());
        // Subleaf 1: only the subleaf's mask applies, ebx falls back to the default.
        assert_eq!(policy.apply(7, 1, host, default_policy), [1, 2, 3, 4]);
        // Any other subleaf: the leaf-wide mask.
        assert_eq!(policy.apply(7, 0, host, default_policy), [1, u32::MAX, 3, 4]);
        assert_eq!(policy.apply(7, 5, host, default_policy), [1, u32::MAX, 3, 4]);
        // Other leaves: the default policy.
        assert_eq!(policy.apply(1, 0, host, default_policy), default_policy);
    }

    #[test]
    fn a_subleaf_mask_wins_whatever_the_order() {
        let mut policy = CpuidPolicy::default();
        assert!(policy.add(mask("0x7,0x0:ecx=00000000000000000000000000000000")));
        assert!(policy.add(mask("0x7:ecx=11111111111111111111111111111111")));
        assert_eq!(policy.apply(7, 0, [0; 4], [0; 4])[2], 0);
        assert_eq!(policy.apply(7, 2, [0; 4], [0; 4])[2], u32::MAX);
    }

    #[test]
    fn multiple_registers_in_one_entry() {
        let mut policy = CpuidPolicy::default();
        assert!(policy
            .add(mask("0x1:eax=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx1,ebx=kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk,edx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")));
        let host = [0xf0, 0xbeef, 0xffff_ffff, 0xffff_ffff];
        let default_policy = [0x10, 0x1, 0x3, 0x8000_0003];
        assert_eq!(policy.apply(1, 0, host, default_policy), [0x11, 0xbeef, 0x3, 0x3]);
    }

    #[test]
    fn reading_a_list_reports_each_bad_entry() {
        let x32 = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        let items = vec![
            Value::Text(format!("0x1:ecx={x32}")),
            Value::Number(1),
            Value::Text(String::from("0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")),
            Value::Text(format!("0x1:eax={x32}")),
            Value::Text(format!("0x7,0:eax={x32}")),
            Value::Text(format!("7,0x0:ebx={x32}")),
        ];
        let mut errors = Vec::new();
        let policy = read_cpuid_list(&items, |message| errors.push(message));
        assert_eq!(
            errors,
            vec![
                "cpuid entry 2: expected a string like '0x1:ecx=...', got a number".to_string(),
                "cpuid entry 3 '0x1:ecx=0xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx': value for ecx has 31 characters, expected 32"
                    .to_string(),
                format!("cpuid entry 4 '0x1:eax={x32}': leaf 0x1 is already given by entry 1"),
                format!("cpuid entry 6 '7,0x0:ebx={x32}': leaf 0x7 subleaf 0x0 is already given by entry 5"),
            ]
        );
        assert_eq!(policy.len(), 2);
    }
}
