//! Collecting errors and warnings while a file is read.
//!
//! Nothing stops at the first problem: every check reports into a [`Report`]
//! and carries on, so one boot shows the user everything to fix.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// One problem found in the configuration file, located by line and key.
///
/// Messages never contain a token secret, so an error may be logged or shown
/// to anyone who can read the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given to [`parse`](crate::parse).
    pub file: String,
    /// 1-based line of the offending key (for a syntax error: of the
    /// offending token).
    pub line: u32,
    /// The key the problem is about, when there is one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}:{}: key {}: {}", self.file, self.line, quoted(key), self.message),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.message),
        }
    }
}

pub(crate) struct Report {
    file: String,
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigError>,
}

impl Report {
    pub(crate) fn new(file: &str) -> Self {
        Report { file: file.into(), errors: Vec::new(), warnings: Vec::new() }
    }

    pub(crate) fn error(&mut self, line: u32, key: Option<&str>, message: impl Into<String>) {
        let error = self.located(line, key, message.into());
        self.errors.push(error);
    }

    pub(crate) fn warn(&mut self, line: u32, key: Option<&str>, message: impl Into<String>) {
        let warning = self.located(line, key, message.into());
        self.warnings.push(warning);
    }

    fn located(&self, line: u32, key: Option<&str>, message: String) -> ConfigError {
        ConfigError { file: self.file.clone(), line, key: key.map(Into::into), message }
    }
}

/// Longest piece of user text repeated in a message: enough to recognise a
/// value, without letting one huge line flood the console.
const MAX_QUOTED_CHARS: usize = 80;

/// `text` in single quotes, for a message: control characters escaped and long
/// text cut short. Never use it on anything that may hold a token secret.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::from("'");
    for (count, character) in text.chars().enumerate() {
        if count == MAX_QUOTED_CHARS {
            out.push_str("...");
            break;
        }
        out.extend(character.escape_debug());
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn display_names_the_key_when_there_is_one() {
        let mut report = Report::new("boot.cfg");
        report.error(3, Some("memory"), "expected a number");
        report.error(7, None, "unexpected character '$'");
        assert_eq!(report.errors[0].to_string(), "boot.cfg:3: key 'memory': expected a number");
        assert_eq!(report.errors[1].to_string(), "boot.cfg:7: unexpected character '$'");
    }

    #[test]
    fn quoted_escapes_control_characters_and_cuts_long_text() {
        assert_eq!(quoted("a\tb"), "'a\\tb'");
        let long = "y".repeat(500);
        let shown = quoted(&long);
        assert_eq!(shown.len(), MAX_QUOTED_CHARS + "''...".len());
        assert!(shown.ends_with("...'"));
    }
}
