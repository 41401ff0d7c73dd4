//! Reading the keys of one section with their expected types.
//!
//! A section's reader takes each key it knows out of [`Fields`]; whatever is
//! left at the end is an unknown key. Type mismatches are reported here, so
//! the readers only check ranges and meanings.

use crate::parser::{Entry, Value};
use crate::report::{quoted, Report};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use core::ops::RangeInclusive;

/// The outcome of looking a key up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup<T> {
    Absent,
    /// Given, but wrong; the error is already reported.
    Invalid,
    Found {
        value: T,
        line: u32,
    },
}

impl<T> Lookup<T> {
    pub(crate) fn value(self) -> Option<T> {
        match self {
            Lookup::Found { value, .. } => Some(value),
            _ => None,
        }
    }
}

pub(crate) struct Fields<'e, 'r> {
    remaining: BTreeMap<&'e str, &'e Entry>,
    report: &'r mut Report,
    errors_before: usize,
}

impl<'e, 'r> Fields<'e, 'r> {
    /// Indexes the entries by key; a key given twice is an error on the
    /// second occurrence, and the first is the one used.
    pub(crate) fn new(entries: impl IntoIterator<Item = &'e Entry>, report: &'r mut Report) -> Self {
        let errors_before = report.errors.len();
        let mut remaining: BTreeMap<&'e str, &'e Entry> = BTreeMap::new();
        for entry in entries {
            if let Some(first) = remaining.get(entry.key.as_str()) {
                // A broken repeat already has its syntax error.
                if entry.value.is_some() {
                    let message = format!("key {} is already set on line {}", quoted(&entry.key), first.line);
                    report.error(entry.line, Some(&entry.key), message);
                }
            } else {
                remaining.insert(&entry.key, entry);
            }
        }
        Fields { remaining, report, errors_before }
    }

    /// Whether any error was reported since this section's reading began.
    pub(crate) fn has_errors(&self) -> bool {
        self.report.errors.len() > self.errors_before
    }

    pub(crate) fn error(&mut self, line: u32, key: &str, message: impl Into<String>) {
        self.report.error(line, Some(key), message);
    }

    pub(crate) fn warn(&mut self, line: u32, key: &str, message: impl Into<String>) {
        self.report.warn(line, Some(key), message);
    }

    /// Takes `key` out, so that it does not count as unknown.
    pub(crate) fn take(&mut self, key: &str) -> Lookup<&'e Value> {
        match self.remaining.remove(key) {
            None => Lookup::Absent,
            Some(Entry { value: None, .. }) => Lookup::Invalid,
            Some(Entry { value: Some(value), line, .. }) => Lookup::Found { value, line: *line },
        }
    }

    /// A key of one shape: `extract` picks the wanted variant out of a value,
    /// and anything else is reported as "expected {what}, got ...".
    fn typed<T>(&mut self, key: &str, what: &str, extract: impl Fn(&'e Value) -> Option<T>) -> Lookup<T> {
        match self.take(key) {
            Lookup::Found { value, line } => match extract(value) {
                Some(extracted) => Lookup::Found { value: extracted, line },
                None => {
                    self.error(line, key, format!("expected {what}, got {}", value.describe()));
                    Lookup::Invalid
                }
            },
            Lookup::Absent => Lookup::Absent,
            Lookup::Invalid => Lookup::Invalid,
        }
    }

    /// A quoted string; `what` describes it for a type error ("a string: ...").
    pub(crate) fn text(&mut self, key: &str, what: &str) -> Lookup<&'e str> {
        self.typed(key, what, |value| match value {
            Value::Text(text) => Some(text.as_str()),
            _ => None,
        })
    }

    pub(crate) fn list(&mut self, key: &str, what: &str) -> Lookup<&'e [Value]> {
        self.typed(key, what, |value| match value {
            Value::List(items) => Some(items.as_slice()),
            _ => None,
        })
    }

    /// A number in `range`; `what` names the quantity ("a number of MiB").
    pub(crate) fn number(&mut self, key: &str, what: &str, range: RangeInclusive<u64>) -> Lookup<u64> {
        let found = self.typed(key, what, |value| match value {
            Value::Number(number) => Some(*number),
            _ => None,
        });
        match found {
            Lookup::Found { value, line } if !range.contains(&value) => {
                let message = format!("expected {what} from {} to {}, got {value}", range.start(), range.end());
                self.error(line, key, message);
                Lookup::Invalid
            }
            other => other,
        }
    }

    /// xl's booleans: 0 or 1.
    pub(crate) fn boolean(&mut self, key: &str) -> Lookup<bool> {
        match self.typed(key, "0 or 1", |value| match value {
            Value::Number(number) => Some(*number),
            _ => None,
        }) {
            Lookup::Found { value: 0, line } => Lookup::Found { value: false, line },
            Lookup::Found { value: 1, line } => Lookup::Found { value: true, line },
            Lookup::Found { value, line } => {
                self.error(line, key, format!("expected 0 or 1, got {value}"));
                Lookup::Invalid
            }
            Lookup::Absent => Lookup::Absent,
            Lookup::Invalid => Lookup::Invalid,
        }
    }

    /// A required key that is absent is reported at the section's header.
    pub(crate) fn require<T>(&mut self, lookup: Lookup<T>, key: &str, section_line: u32, hint: &str) -> Option<T> {
        if let Lookup::Absent = lookup {
            self.error(section_line, key, format!("key '{key}' is missing: {hint}"));
        }
        lookup.value()
    }

    /// Reports every key nobody took, and returns whether the section had
    /// any error. `section` completes "unknown key 'x' ...", e.g. "for a guest".
    pub(crate) fn finish(mut self, section: &str) -> bool {
        let unknown = core::mem::take(&mut self.remaining);
        for (key, entry) in unknown {
            // A broken statement with an unknown key already has its error.
            if entry.value.is_some() {
                self.error(entry.line, key, format!("unknown key {} {section}", quoted(key)));
            }
        }
        self.has_errors()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn entry(key: &str, line: u32, value: Option<Value>) -> Entry {
        Entry { key: key.into(), line, value }
    }

    fn messages(report: &Report) -> Vec<(u32, Option<&str>, &str)> {
        report.errors.iter().map(|e| (e.line, e.key.as_deref(), e.message.as_str())).collect()
    }

    #[test]
    fn typed_lookups() {
        let entries: Vec<Entry> = vec![
            entry("n", 1, Some(Value::Number(5))),
            entry("s", 2, Some(Value::Text("hi".into()))),
            entry("l", 3, Some(Value::List(vec![]))),
            entry("bad", 4, None),
            entry("t", 5, Some(Value::Number(1))),
        ];
        let mut report = Report::new("f");
        let mut fields = Fields::new(&entries, &mut report);
        assert_eq!(fields.number("n", "a count", 1..=9), Lookup::Found { value: 5, line: 1 });
        assert_eq!(fields.text("s", "a string"), Lookup::Found { value: "hi", line: 2 });
        assert_eq!(fields.list("l", "a list"), Lookup::Found { value: &[][..], line: 3 });
        assert_eq!(fields.text("bad", "a string"), Lookup::Invalid);
        assert_eq!(fields.boolean("t"), Lookup::Found { value: true, line: 5 });
        assert_eq!(fields.text("missing", "a string"), Lookup::Absent);
        assert!(!fields.has_errors());
        assert!(!fields.finish("here"));
        assert!(report.errors.is_empty());
    }

    #[test]
    fn mismatches_and_ranges_are_reported() {
        let entries: Vec<Entry> = vec![
            entry("n", 1, Some(Value::Text("5".into()))),
            entry("m", 2, Some(Value::Number(10))),
            entry("b", 3, Some(Value::Number(2))),
            entry("s", 4, Some(Value::List(vec![]))),
        ];
        let mut report = Report::new("f");
        let mut fields = Fields::new(&entries, &mut report);
        assert_eq!(fields.number("n", "a count", 1..=9), Lookup::Invalid);
        assert_eq!(fields.number("m", "a count", 1..=9), Lookup::Invalid);
        assert_eq!(fields.boolean("b"), Lookup::Invalid);
        assert_eq!(fields.text("s", "a name in quotes"), Lookup::Invalid);
        assert!(fields.finish("here"));
        assert_eq!(
            messages(&report),
            vec![
                (1, Some("n"), "expected a count, got a string"),
                (2, Some("m"), "expected a count from 1 to 9, got 10"),
                (3, Some("b"), "expected 0 or 1, got 2"),
                (4, Some("s"), "expected a name in quotes, got a list"),
            ]
        );
    }

    #[test]
    fn duplicates_unknown_and_missing_keys() {
        let entries: Vec<Entry> = vec![
            entry("a", 1, Some(Value::Number(1))),
            entry("a", 4, Some(Value::Number(2))),
            entry("a", 5, None),
            entry("odd", 6, Some(Value::Number(1))),
            entry("broken", 7, None),
        ];
        let mut report = Report::new("f");
        let mut fields = Fields::new(&entries, &mut report);
        assert_eq!(fields.number("a", "n", 0..=9), Lookup::Found { value: 1, line: 1 });
        let missing = fields.text("name", "a string");
        assert_eq!(fields.require(missing, "name", 9, "every guest needs one"), None);
        assert!(fields.finish("for a test"));
        assert_eq!(
            messages(&report),
            vec![
                (4, Some("a"), "key 'a' is already set on line 1"),
                (9, Some("name"), "key 'name' is missing: every guest needs one"),
                (6, Some("odd"), "unknown key 'odd' for a test"),
            ]
        );
    }
}
