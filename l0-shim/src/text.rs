//! Text that monitors and guests hand the shim, made safe to print.
//!
//! Log lines, stop reasons and console output come from untrusted code. A
//! newline in them could forge a line of the shim's own (a summary line,
//! a "guest ...: stopped"), and terminal escape sequences could rewrite the
//! operator's screen, so control characters are shown escaped.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt::Write;

/// `text` with every control character except tab written as `\xNN`.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            let _ = write!(escaped, "\\x{:02x}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

fn is_unsafe(c: char) -> bool {
    c != '\t' && (c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("plain text, tabs\tand ünïcode"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nguest x: stopped"), "a\\x0aguest x: stopped");
        assert_eq!(printable("\x1b[2Jclear\r"), "\\x1b[2Jclear\\x0d");
        assert_eq!(printable("del\x7f and c1 \u{9b}"), "del\\x7f and c1 \\x9b");
    }
}
